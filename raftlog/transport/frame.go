package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cespare/xxhash/v2"
	"go.etcd.io/raft/v3/raftpb"
)

// Wire format. Every body on /raft/ is a sequence of frames:
//
//	+--------+----------------------+-----------------+
//	| type 1 | payload length 4, BE | payload         |
//	+--------+----------------------+-----------------+
//
// A stream body carries frameMsg and framePing frames; its response body
// carries framePong frames. A snapshot body is exactly
//
//	frameSnapMsg frameSnapManifest (frameSnapChunk* frameSnapFileEnd){n} frameSnapEnd
//
// with one chunk run and one file-end per manifest entry, in manifest order.
// A reader checks the length against its bound before reading the payload.

// frameType is the first byte of a frame.
type frameType byte

const (
	// frameMsg: a marshaled raftpb.Message.
	frameMsg frameType = 1
	// framePing: pingPayloadBytes of the sender's clock, echoed in a pong.
	framePing frameType = 2
	// framePong: the payload of the ping it answers.
	framePong frameType = 3
	// frameSnapMsg: the marshaled MsgSnap a snapshot body starts with.
	frameSnapMsg frameType = 10
	// frameSnapManifest: an encoded manifest (encodeManifest).
	frameSnapManifest frameType = 11
	// frameSnapChunk: the next bytes of the current file.
	frameSnapChunk frameType = 12
	// frameSnapFileEnd: 8 bytes, big-endian xxhash64 of the whole file.
	frameSnapFileEnd frameType = 13
	// frameSnapEnd: empty; the snapshot is complete.
	frameSnapEnd frameType = 14
)

const (
	// frameHeaderBytes is the size of a frame header: type and length.
	frameHeaderBytes = 5
	// pingPayloadBytes is the payload of a ping or pong: nanoseconds since
	// the pinging Transport started, big-endian.
	pingPayloadBytes = 8
	// maxControlFrameBytes bounds ping, pong, file-end and end payloads.
	maxControlFrameBytes = 64
	// protocolVersion is sent in headerVersion; a receiver refuses others.
	protocolVersion = "1"
)

// HTTP headers of every request to /raft/.
const (
	headerVersion   = "X-Raft-Transport-Version"
	headerClusterID = "X-Raft-Cluster-ID" // hex
	headerFrom      = "X-Raft-From"       // hex member ID of the sender
	headerTo        = "X-Raft-To"         // hex member ID the sender meant
)

// appendFrameHeader appends the header of a frame of n payload bytes.
func appendFrameHeader(b []byte, t frameType, n int) []byte {
	b = append(b, byte(t))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// appendMsgFrame appends m as a frame of type t, marshaling it in place.
// REQUIRES: m.Size() fits in a uint32.
func appendMsgFrame(b []byte, t frameType, m *raftpb.Message) []byte {
	n := m.Size()
	b = appendFrameHeader(b, t, n)
	start := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := m.MarshalToSizedBuffer(b[start:]); err != nil {
		// MarshalToSizedBuffer fails only when the buffer is smaller than
		// Size(), which the line above rules out.
		panic(fmt.Sprintf("transport: marshal raft message of %d bytes: %v", n, err))
	}
	return b
}

// frameReader reads frames from r into one reusable buffer, refusing any
// payload over maxBytes before reading it.
type frameReader struct {
	r        *bufio.Reader
	hdr      [frameHeaderBytes]byte
	buf      []byte
	maxBytes int
}

func newFrameReader(r io.Reader, maxBytes int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, recvBufferBytes), maxBytes: maxBytes}
}

// header reads the next frame header and returns its type and payload
// length, which is at most limit; the caller then reads exactly that many
// bytes from fr.r (or calls payload).
func (fr *frameReader) header(limit int) (frameType, int, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, 0, err
	}
	t := frameType(fr.hdr[0])
	n := int64(binary.BigEndian.Uint32(fr.hdr[1:]))
	if n > int64(limit) {
		return t, 0, fmt.Errorf("%w: type %d frame of %d bytes, limit %d", ErrFrameTooLarge, t, n, limit)
	}
	return t, int(n), nil
}

// payload reads n payload bytes into the reusable buffer. The slice is
// valid until the next call.
// REQUIRES: n <= fr.maxBytes (header checked it).
func (fr *frameReader) payload(n int) ([]byte, error) {
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	b := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return nil, unexpectedEOF(err)
	}
	return b, nil
}

// next reads a whole frame of at most fr.maxBytes.
func (fr *frameReader) next() (frameType, []byte, error) {
	t, n, err := fr.header(fr.maxBytes)
	if err != nil {
		return t, nil, err
	}
	b, err := fr.payload(n)
	return t, b, err
}

// expect reads a whole frame of type want and at most limit bytes.
func (fr *frameReader) expect(want frameType, limit int) ([]byte, error) {
	t, n, err := fr.header(limit)
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	if t != want {
		return nil, fmt.Errorf("%w: got type %d, want %d", ErrBadFrame, t, want)
	}
	return fr.payload(n)
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// manifestFile is one file of a snapshot manifest.
type manifestFile struct {
	Name string
	Size int64
}

// encodeManifest encodes files as
//
//	count uint32 | (name length uint16 | name | size uint64){count} | xxhash64 uint64
//
// all big-endian, the checksum covering every byte before it.
func encodeManifest(files []manifestFile) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(files)))
	for _, f := range files {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Name)))
		b = append(b, f.Name...)
		b = binary.BigEndian.AppendUint64(b, uint64(f.Size))
	}
	return binary.BigEndian.AppendUint64(b, xxhash.Sum64(b))
}

// decodeManifest decodes and checks an encodeManifest payload: checksum,
// bounds, and that every name is a valid, distinct file name.
func decodeManifest(b []byte) ([]manifestFile, error) {
	if len(b) < 4+8 {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrBadFrame, len(b))
	}
	body, sum := b[:len(b)-8], binary.BigEndian.Uint64(b[len(b)-8:])
	if got := xxhash.Sum64(body); got != sum {
		return nil, fmt.Errorf("%w: manifest xxhash %016x, want %016x", ErrSnapshotChecksum, got, sum)
	}
	count := binary.BigEndian.Uint32(body)
	body = body[4:]
	if count > maxSnapshotFiles {
		return nil, fmt.Errorf("%w: manifest lists %d files, limit %d", ErrBadFrame, count, maxSnapshotFiles)
	}
	// Each entry takes at least 2+1+8 bytes, so count cannot claim more
	// entries than the payload holds: bounds the allocation below.
	if uint64(count)*11 > uint64(len(body)) {
		return nil, fmt.Errorf("%w: manifest lists %d files in %d bytes", ErrBadFrame, count, len(body))
	}
	files := make([]manifestFile, 0, count)
	seen := make(map[string]struct{}, count)
	for i := uint32(0); i < count; i++ {
		if len(body) < 2 {
			return nil, fmt.Errorf("%w: manifest truncated at file %d", ErrBadFrame, i)
		}
		n := int(binary.BigEndian.Uint16(body))
		body = body[2:]
		if len(body) < n+8 {
			return nil, fmt.Errorf("%w: manifest truncated at file %d", ErrBadFrame, i)
		}
		name := string(body[:n])
		size := int64(binary.BigEndian.Uint64(body[n:]))
		body = body[n+8:]
		if err := checkFileName(name); err != nil {
			return nil, err
		}
		if size < 0 {
			return nil, fmt.Errorf("%w: file %q has size %d", ErrBadFrame, name, size)
		}
		if _, dup := seen[name]; dup {
			return nil, fmt.Errorf("%w: file %q listed twice", ErrBadFrame, name)
		}
		seen[name] = struct{}{}
		files = append(files, manifestFile{Name: name, Size: size})
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the manifest's files", ErrBadFrame, len(body))
	}
	return files, nil
}

// checkFileName accepts a single, plain path element: a snapshot is a flat
// directory (an engine checkpoint), and a name must not escape it.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxSnapshotFileNameBytes ||
		strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("%w: bad file name %q", ErrBadFrame, name)
	}
	return nil
}
