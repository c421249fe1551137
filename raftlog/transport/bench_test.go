package transport

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkStream measures one stream's throughput: MsgApp of one entry of
// the given size from member 1 to member 2 on loopback, as fast as the
// receiver takes them. It reports messages/s and payload MB/s (b.SetBytes).
//
//	go test -run '^$' -bench Stream -benchtime 200000x ./raftlog/transport
func BenchmarkStream(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int
	}{{"entry=0B", 0}, {"entry=256B", 256}, {"entry=4KiB", 4 << 10}, {"entry=64KiB", 64 << 10}} {
		b.Run(size.name, func(b *testing.B) { benchStream(b, size.bytes) })
	}
}

func benchStream(b *testing.B, entryBytes int) {
	cfg1 := testConfig(b, 1, 7)
	cfg1.PingInterval = time.Second
	cfg2 := cfg1
	cfg2.LocalID = 2
	cfg2.SnapshotDir = b.TempDir()
	s := newMember(b, cfg1, "", true)
	r := newMember(b, cfg2, "", true)
	r.raft.record = false
	connect(s, r)
	// A raft leader sends a Ready's worth of messages per Send.
	const perSend = 64
	msgs := apps(1, 2, perSend, entryBytes)
	if entryBytes == 0 {
		msgs = heartbeats(1, 2, perSend)
	}
	// Keep at most half the queue in flight, so nothing is dropped.
	window := int64(cfg1.WithDefaults().SendQueueMsgs / 2)
	s.tr.Send(msgs[:1])
	waitFor(b, waitTimeout, "stream up", func() bool { return r.raft.count.Load() == 1 })
	r.raft.count.Store(0)

	b.SetBytes(int64(msgs[0].Size()))
	b.ResetTimer()
	start := time.Now()
	var sent int64
	for sent < int64(b.N) {
		n := min(int64(perSend), int64(b.N)-sent)
		for sent-r.raft.count.Load() > window {
			time.Sleep(20 * time.Microsecond)
		}
		s.tr.Send(msgs[:n])
		sent += n
	}
	for r.raft.count.Load() < int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if d := s.tr.Stats()[2].MsgsDropped; d != 0 {
		b.Fatalf("%d messages dropped", d)
	}
	st := s.tr.Stats()[2]
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.MsgsSent)/float64(max(st.Writes, 1)), "msgs/write")
}

// BenchmarkSnapshot measures snapshot streaming: a checkpoint of 4 files of
// 16 MiB from member 1 to member 2 on loopback, through disk on both sides
// (files staged, checked and fsynced). It reports MB/s of file bytes.
//
//	go test -run '^$' -bench Snapshot -benchtime 5x ./raftlog/transport
func BenchmarkSnapshot(b *testing.B) {
	const fileBytes = 16 << 20
	cfg1 := testConfig(b, 1, 7)
	cfg2 := cfg1
	cfg2.LocalID = 2
	cfg2.SnapshotDir = b.TempDir()
	s := newMember(b, cfg1, "", true)
	r := newMember(b, cfg2, "", true)
	connect(s, r)
	s.src.dir = b.TempDir()
	writeTree(b, s.src.dir, map[string]int{"1.sst": fileBytes, "2.sst": fileBytes, "3.sst": fileBytes, "4.sst": fileBytes})
	b.SetBytes(4 * fileBytes)
	b.ResetTimer()
	for i := range b.N {
		s.tr.Send([]raftpb.Message{snapMsg(1, 2, 1, uint64(i+1))})
		waitFor(b, time.Minute, "snapshot", func() bool { return len(s.raft.snapshotStatuses(2)) == i+1 })
	}
	b.StopTimer()
	for _, st := range s.raft.snapshotStatuses(2) {
		if st != raft.SnapshotFinish {
			b.Fatalf("snapshot statuses %v", s.raft.snapshotStatuses(2))
		}
	}
}
