// Package failpoint names the points at MetaStore's persistence boundaries
// where the robustness suite makes a member fail: panic, return an error,
// or stall. In a normal build every point compiles to a constant-false
// branch and costs nothing; built with `-tags failpoints` the points read
// their actions from the METASTORE_FAILPOINTS environment variable at start
// and from Set at run time (the server mounts Set on the peer port under
// /debug/failpoints when the tag is on).
//
// A call site looks like
//
//	if failpoint.Enabled {
//		if err := failpoint.Inject(failpoint.RaftBeforeSave); err != nil {
//			return err
//		}
//	}
//
// Terms, as gofail writes them:
//
//	panic        panic("failpoint <name>")
//	error        Inject returns ErrInjected
//	sleep(ms)    sleep ms milliseconds, then go on
//	exit         os.Exit(3) at once: no deferred calls, no flushing
//	off          nothing (the same as not setting the point)
//
// A term may carry a count, "2*panic": it acts on its first 2 hits and then
// turns off. METASTORE_FAILPOINTS holds "name=term" pairs separated by ';'.
package failpoint

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The named points. Each is documented where it is called.
const (
	// RaftBeforeSave: a Ready's entries and hard state are about to be
	// written and synced to the raft log.
	RaftBeforeSave = "raftBeforeSave"
	// RaftAfterSave: the raft log write is synced; nothing sent or applied
	// for this Ready yet.
	RaftAfterSave = "raftAfterSave"
	// ApplyBeforeBatch: committed entries are decoded and about to be
	// written to the data engine.
	ApplyBeforeBatch = "applyBeforeBatch"
	// ApplyAfterBatch: the apply batch (data and applied index) is written;
	// clients not answered yet.
	ApplyAfterBatch = "applyAfterBatch"
	// CompactMid: between two batches of a revision compaction.
	CompactMid = "compactMid"
	// SnapshotSendMid: a snapshot stream is half sent to a follower.
	SnapshotSendMid = "snapshotSendMid"
	// SnapshotInstallMid: a received snapshot is staged but not yet
	// installed in place of the member's data.
	SnapshotInstallMid = "snapshotInstallMid"
	// RaftSync: the raft log's fsync itself; "error" here models a failed
	// fsync, which must be fatal.
	RaftSync = "raftSync"
	// ApplyWrite: the data engine's write of an apply batch (mvcc); "error"
	// models a failed write (ENOSPC, EIO), after which the engine's state is
	// unknown and the member must stop.
	ApplyWrite = "applyWrite"
)

// Names lists every point, sorted.
func Names() []string {
	n := []string{RaftBeforeSave, RaftAfterSave, ApplyBeforeBatch, ApplyAfterBatch,
		CompactMid, SnapshotSendMid, SnapshotInstallMid, RaftSync, ApplyWrite}
	sort.Strings(n)
	return n
}

// ErrInjected is what a point set to "error" returns.
var ErrInjected = errors.New("failpoint: injected error")

// EnvVar is the environment variable read at start in a failpoints build.
const EnvVar = "METASTORE_FAILPOINTS"

// action is one parsed term.
type action struct {
	kind    string // panic, error, sleep, exit, off
	sleepMs int
	count   int // hits left; -1 = unlimited
}

// parseTerm parses "panic", "2*error", "sleep(100)".
func parseTerm(s string) (action, error) {
	a := action{count: -1}
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '*'); i >= 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n <= 0 {
			return a, fmt.Errorf("failpoint: bad count in %q", s)
		}
		a.count = n
		s = s[i+1:]
	}
	switch {
	case s == "panic" || s == "error" || s == "exit" || s == "off":
		a.kind = s
	case strings.HasPrefix(s, "sleep(") && strings.HasSuffix(s, ")"):
		ms, err := strconv.Atoi(s[len("sleep(") : len(s)-1])
		if err != nil || ms < 0 {
			return a, fmt.Errorf("failpoint: bad sleep in %q", s)
		}
		a.kind, a.sleepMs = "sleep", ms
	default:
		return a, fmt.Errorf("failpoint: unknown term %q (want panic, error, exit, off, sleep(ms), with an optional N* count)", s)
	}
	return a, nil
}

// parseSpec parses "name=term;name=term" and checks every name is known.
func parseSpec(spec string) (map[string]action, error) {
	out := map[string]action{}
	known := map[string]bool{}
	for _, n := range Names() {
		known[n] = true
	}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, term, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("failpoint: %q is not name=term", part)
		}
		name = strings.TrimSpace(name)
		if !known[name] {
			return nil, fmt.Errorf("failpoint: unknown point %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		a, err := parseTerm(term)
		if err != nil {
			return nil, err
		}
		out[name] = a
	}
	return out, nil
}
