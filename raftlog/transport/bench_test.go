package transport

import (
	"testing"
	"time"
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
