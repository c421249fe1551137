package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// TestRestoreSnapshotRecordsItsIndex installs a checkpoint whose persisted
// applied index is below the snapshot's index, as a leader's is when its
// last entries changed nothing (their index is persisted lazily). The
// member must count the snapshot's index as applied: raft resumes after
// it, and the robustness suite once saw a follower panic with "committed
// entries skip past the applied index" (first 420, applied 418) there.
func TestRestoreSnapshotRecordsItsIndex(t *testing.T) {
	src, srcCli := startInProcess(t, inProcessConfig(t, t.TempDir()))
	for i := 0; i < 10; i++ {
		if _, err := srcCli.Put(context.Background(), fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	dir, _, err := src.checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	ckptApplied := src.kv.AppliedIndex()
	wantRev := src.kv.Rev()

	dst, _ := startInProcess(t, inProcessConfig(t, t.TempDir()))
	waitIdle(t, dst)
	// Install as the apply goroutine does, with no apply goroutine running
	// beside the test's: stop the member's raft node first.
	dst.node.Stop()
	snapIndex := ckptApplied + 5
	dst.stagedSnapshot.Store(&stagedSnapshot{index: snapIndex, term: 2, dir: dir})
	err = (*applier)(dst).RestoreSnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: snapIndex, Term: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got := dst.kv.AppliedIndex(); got != snapIndex {
		t.Errorf("store's applied index after install = %d, want the snapshot's %d", got, snapIndex)
	}
	if got := (*applier)(dst).AppliedIndex(); got != snapIndex {
		t.Errorf("applier's applied index after install = %d, want the snapshot's %d", got, snapIndex)
	}
	if got := dst.kv.Rev(); got != wantRev {
		t.Errorf("revision after install = %d, want the checkpoint's %d", got, wantRev)
	}
}

// waitIdle waits until s has applied everything committed so far.
func waitIdle(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.node.Status()
		if st.Commit > 0 && s.applied.Load() >= st.Commit {
			time.Sleep(100 * time.Millisecond) // the member's own start-up proposals
			if st2 := s.node.Status(); s.applied.Load() >= st2.Commit {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("member did not become idle")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type fakeLog uint64

func (f fakeLog) FirstIndex() (uint64, error) { return uint64(f), nil }

// TestCheckEngineCoversLog: a data engine that has applied less than the
// raft log can replay is refused with a clear error, not a later panic.
func TestCheckEngineCoversLog(t *testing.T) {
	for _, tc := range []struct {
		applied, first uint64
		ok             bool
	}{
		{0, 1, true},      // new member
		{100, 101, true},  // log starts right after the state
		{300, 101, true},  // state ahead of the log (a snapshot install)
		{102, 254, false}, // what a damaged WAL left in TestDiskFaultWALMidCorruption
		{0, 2, false},
	} {
		err := checkEngineCoversLog(tc.applied, fakeLog(tc.first))
		if (err == nil) != tc.ok {
			t.Errorf("applied %d, log from %d: err %v, want ok=%t", tc.applied, tc.first, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "the data engine is damaged") {
			t.Errorf("error does not say what happened: %v", err)
		}
	}
}
