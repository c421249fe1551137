package transport

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Errors the transport returns or records (PeerStats.LastError). Compare
// with errors.Is. The ones a receiver answers with travel as the text of the
// HTTP error response and are mapped back to the same sentinel by the sender.
var (
	ErrInvalidConfig       = errors.New("transport: invalid config")
	ErrStopped             = errors.New("transport: stopped")
	ErrClusterIDMismatch   = errors.New("transport: cluster ID mismatch")
	ErrMemberIDMismatch    = errors.New("transport: member ID mismatch")
	ErrUnknownPeer         = errors.New("transport: unknown peer")
	ErrMemberRemoved       = errors.New("transport: member removed from the cluster")
	ErrIncompatibleVersion = errors.New("transport: incompatible protocol version")
	ErrFrameTooLarge       = errors.New("transport: frame too large")
	ErrBadFrame            = errors.New("transport: malformed frame")
	ErrDialTimeout         = errors.New("transport: dial timeout")
	ErrPeerIdle            = errors.New("transport: peer idle")
	ErrWriteTimeout        = errors.New("transport: write timeout")
	ErrBlackholed          = errors.New("transport: blackholed by fault injection")
	ErrSnapshotChecksum    = errors.New("transport: snapshot checksum mismatch")
	ErrSnapshotBusy        = errors.New("transport: snapshot receive already in progress")
	ErrSnapshotLayout      = errors.New("transport: snapshot directory must hold only regular files")
	// ErrNotHTTP2 is a peer connection that is not HTTP/2: the peer's
	// server was not set up with Transport.ConfigureServer.
	ErrNotHTTP2 = errors.New("transport: peer connection is not HTTP/2 (set up the peer server with Transport.ConfigureServer)")
)

// wireErrors are the sentinels a receiver may answer with.
var wireErrors = []error{
	ErrStopped, ErrClusterIDMismatch, ErrMemberIDMismatch, ErrUnknownPeer, ErrMemberRemoved,
	ErrIncompatibleVersion, ErrFrameTooLarge, ErrBadFrame, ErrBlackholed,
	ErrSnapshotChecksum, ErrSnapshotBusy, ErrSnapshotLayout, ErrPeerIdle,
	ErrNotHTTP2,
}

// writeError answers a request with err's text, whose first line the sender
// maps back to a sentinel (errorFromResponse).
func writeError(w http.ResponseWriter, err error, code int) {
	http.Error(w, err.Error(), code)
}

// errorFromResponse turns a non-success answer into an error wrapping the
// matching sentinel, or a plain error carrying the text when none matches.
// It reads at most errorBodyBytes of the body.
func errorFromResponse(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
	text := strings.TrimSpace(string(b))
	for _, e := range wireErrors {
		if strings.HasPrefix(text, e.Error()) {
			return fmt.Errorf("peer answered %d: %w%s", resp.StatusCode, e, strings.TrimPrefix(text, e.Error()))
		}
	}
	return fmt.Errorf("transport: peer answered %d: %q", resp.StatusCode, text)
}
