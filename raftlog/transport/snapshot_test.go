package transport

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

const testChunkBytes = 64 << 10

// snapshotPair returns two connected members with chunk size
// testChunkBytes, member 1 serving a snapshot of sizes.
func snapshotPair(t *testing.T, sizes map[string]int) (a, b *member) {
	cfg1, cfg2 := testConfig(t, 1, 7), testConfig(t, 2, 7)
	cfg1.SnapshotChunkBytes, cfg2.SnapshotChunkBytes = testChunkBytes, testChunkBytes
	a = newMember(t, cfg1, "", true)
	b = newMember(t, cfg2, "", true)
	a.src.dir = filepath.Join(t.TempDir(), "checkpoint")
	writeTree(t, a.src.dir, sizes)
	connect(a, b)
	return a, b
}

func waitSnapshotStatus(t *testing.T, r *fakeRaft, id uint64, n int) []raft.SnapshotStatus {
	t.Helper()
	waitFor(t, waitTimeout, "ReportSnapshot", func() bool { return len(r.snapshotStatuses(id)) >= n })
	return r.snapshotStatuses(id)
}

// A directory of several files, some over the chunk size, some empty,
// arrives intact under SnapshotDir/<term>-<index>, before the sink and then
// raft hear of it; the sender hears SnapshotFinish and releases the source.
func TestSnapshotStreaming(t *testing.T) {
	sizes := map[string]int{
		"CURRENT":        16,
		"MANIFEST-00001": 0,
		"000004.sst":     3*testChunkBytes + 17,
		"000005.sst":     testChunkBytes,
		"000006.sst":     testChunkBytes + 1,
		"000007.sst":     testChunkBytes - 1,
		"OPTIONS-00003":  1,
	}
	a, b := snapshotPair(t, sizes)
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	if got := waitSnapshotStatus(t, a.raft, 2, 1); got[0] != raft.SnapshotFinish {
		t.Fatalf("ReportSnapshot %v, want finish", got)
	}
	want := filepath.Join(b.cfg.SnapshotDir, "3-10")
	if got := b.sink.received(); !slices.Equal(got, []string{want}) {
		t.Fatalf("sink got %v, want [%s]", got, want)
	}
	sameTree(t, a.src.dir, want)
	msgs := b.raft.from(1)
	if len(msgs) != 1 || msgs[0].Type != raftpb.MsgSnap || msgs[0].Snapshot.Metadata.Index != 10 {
		t.Fatalf("raft got %+v", msgs)
	}
	if got := dirEntries(t, b.cfg.SnapshotDir); !slices.Equal(got, []string{"3-10"}) {
		t.Fatalf("snapshot dir holds %v", got)
	}
	if a.src.opened.Load() != 1 || a.src.released.Load() != 1 {
		t.Fatalf("source opened %d, released %d", a.src.opened.Load(), a.src.released.Load())
	}
	if st := a.tr.Stats()[2]; st.SnapshotsSent != 1 || st.SnapshotsFailed != 0 {
		t.Fatalf("sender stats %+v", st)
	}
	if st := b.tr.Stats()[1]; st.SnapshotsReceived != 1 {
		t.Fatalf("receiver stats %+v", st)
	}

	// The same snapshot again replaces the installed copy.
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	if got := waitSnapshotStatus(t, a.raft, 2, 2); got[1] != raft.SnapshotFinish {
		t.Fatalf("second ReportSnapshot %v", got)
	}
	sameTree(t, a.src.dir, want)
}

// Sending a 48 MiB snapshot of 16 MiB files keeps the live heap far below
// one file: the sender and the receiver each hold one chunk, never a file.
func TestSnapshotMemoryBounded(t *testing.T) {
	const fileBytes = 16 << 20
	a, b := snapshotPair(t, map[string]int{"a.sst": fileBytes, "b.sst": fileBytes, "c.sst": fileBytes})
	// Warm up connections and pools with a small message.
	a.tr.Send(heartbeats(1, 2, 1))
	waitFor(t, waitTimeout, "warm-up", func() bool { return len(b.raft.from(1)) == 1 })

	// Sample the live heap while the snapshot streams. A small GC percent
	// keeps garbage (HTTP/2 frame buffers) from hiding in the figure.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}()
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 2, 20)})
	got := waitSnapshotStatus(t, a.raft, 2, 1)
	close(done)
	<-sampled
	if got[0] != raft.SnapshotFinish {
		t.Fatalf("ReportSnapshot %v", got)
	}
	grew := int64(peak) - int64(base)
	t.Logf("sent %d bytes in chunks of %d; live heap grew by at most %d bytes (both sides)", 3*fileBytes, testChunkBytes, grew)
	// Buffering one file would grow the heap by 16 MiB; one chunk per side
	// plus HTTP/2 buffers (512 KiB per stream) stay under a quarter of it.
	if grew > fileBytes/4 {
		t.Fatalf("live heap grew by %d bytes streaming %d-byte files", grew, fileBytes)
	}
	sameTree(t, a.src.dir, filepath.Join(b.cfg.SnapshotDir, "2-20"))
}

// A chunk corrupted in flight fails the file's checksum: nothing is
// installed, the sink and raft hear nothing, the sender hears failure. After
// Heal the same snapshot goes through.
func TestSnapshotCorruptChunkRejected(t *testing.T) {
	a, b := snapshotPair(t, map[string]int{"a.sst": 2*testChunkBytes + 5, "b.sst": 100})
	a.tr.Faults().CorruptSnapshots(2)
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	if got := waitSnapshotStatus(t, a.raft, 2, 1); got[0] != raft.SnapshotFailure {
		t.Fatalf("ReportSnapshot %v, want failure", got)
	}
	if got := b.sink.received(); len(got) != 0 {
		t.Fatalf("sink got %v", got)
	}
	if got := b.raft.from(1); len(got) != 0 {
		t.Fatalf("raft got %v", got)
	}
	if got := dirEntries(t, b.cfg.SnapshotDir); len(got) != 0 {
		t.Fatalf("snapshot dir holds %v after a rejected snapshot", got)
	}
	if st := a.tr.Stats()[2]; st.SnapshotsFailed != 1 || st.SnapshotsSent != 0 {
		t.Fatalf("sender stats %+v", st)
	}
	if a.src.released.Load() != 1 {
		t.Fatal("source not released after failure")
	}

	a.tr.Faults().Heal()
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	if got := waitSnapshotStatus(t, a.raft, 2, 2); got[1] != raft.SnapshotFinish {
		t.Fatalf("ReportSnapshot after Heal %v", got)
	}
	sameTree(t, a.src.dir, filepath.Join(b.cfg.SnapshotDir, "3-10"))
}

// A receiver that crashed mid-install leaves a .tmp directory; New removes
// it and keeps complete snapshots (they belong to the sink).
func TestPartialSnapshotRemovedOnNew(t *testing.T) {
	cfg := testConfig(t, 2, 7)
	writeTree(t, filepath.Join(cfg.SnapshotDir, "5-100.tmp"), map[string]int{"half.sst": 1000})
	writeTree(t, filepath.Join(cfg.SnapshotDir, "4-90"), map[string]int{"whole.sst": 1000})
	m := newMember(t, cfg, "", false)
	if got := dirEntries(t, cfg.SnapshotDir); !slices.Equal(got, []string{"4-90"}) {
		t.Fatalf("snapshot dir holds %v, want [4-90]", got)
	}
	m.stop()
}

// A snapshot in flight does not hold up messages: they travel on their own
// stream while the receiver's sink is busy.
func TestMessagesNotBehindSnapshot(t *testing.T) {
	a, b := snapshotPair(t, map[string]int{"a.sst": 4 * testChunkBytes})
	b.sink.block = make(chan struct{})
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	waitFor(t, waitTimeout, "snapshot staged", func() bool {
		return slices.Contains(dirEntries(t, b.cfg.SnapshotDir), "3-10")
	})
	a.tr.Send(heartbeats(1, 2, 20))
	waitFor(t, waitTimeout, "heartbeats during the snapshot", func() bool { return len(b.raft.from(1)) == 20 })
	checkInOrder(t, b.raft.from(1), 20)
	// A second MsgSnap while one is in flight fails at once.
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 11)})
	if got := waitSnapshotStatus(t, a.raft, 2, 1); got[0] != raft.SnapshotFailure {
		t.Fatalf("second snapshot: %v, want failure", got)
	}
	close(b.sink.block)
	if got := waitSnapshotStatus(t, a.raft, 2, 2); got[1] != raft.SnapshotFinish {
		t.Fatalf("first snapshot: %v, want finish", got)
	}
}

// A snapshot source that fails, and a source with a subdirectory, fail the
// send and are reported.
func TestSnapshotSourceErrors(t *testing.T) {
	a, _ := snapshotPair(t, map[string]int{"a.sst": 10})
	if err := os.Mkdir(filepath.Join(a.src.dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	if got := waitSnapshotStatus(t, a.raft, 2, 1); got[0] != raft.SnapshotFailure {
		t.Fatalf("ReportSnapshot %v, want failure", got)
	}
	a.src.dir = ""
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	if got := waitSnapshotStatus(t, a.raft, 2, 2); got[1] != raft.SnapshotFailure {
		t.Fatalf("ReportSnapshot %v, want failure", got)
	}
}

// Stopping the receiver mid-snapshot fails the send and leaves no .tmp.
func TestSnapshotReceiverStops(t *testing.T) {
	a, b := snapshotPair(t, map[string]int{"a.sst": 8 << 20})
	b.sink.block = make(chan struct{})
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 3, 10)})
	time.Sleep(20 * time.Millisecond)
	close(b.sink.block)
	b.stop()
	got := waitSnapshotStatus(t, a.raft, 2, 1)
	for _, name := range dirEntries(t, b.cfg.SnapshotDir) {
		if filepath.Ext(name) == ".tmp" {
			t.Fatalf("left %s behind (status %v)", name, got)
		}
	}
}
