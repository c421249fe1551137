package watch

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkFanout measures events delivered per second, end to end over
// loopback gRPC, to N watchers on one prefix on one stream; b.N is the
// number of revisions written (one put each).
//
//	go test -run '^$' -bench Fanout -benchtime 200x ./server/watch
func BenchmarkFanout(b *testing.B) {
	for _, watchers := range []int{1_000, 10_000} {
		b.Run(fmt.Sprint("watchers=", watchers), func(b *testing.B) {
			src := newFakeSource(1024)
			h := newHarness(b, src, Config{})
			r := h.raw()
			go func() {
				for i := 0; i < watchers; i++ {
					r.create(&pb.WatchCreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0")})
				}
			}()
			for i := 0; i < watchers; i++ {
				if resp := r.next(waitTimeout); !resp.Created {
					b.Fatalf("got %v", resp)
				}
			}
			want := b.N * watchers
			got := make(chan int, 1)
			b.ResetTimer()
			start := time.Now()
			go func() {
				n := 0
				for n < want {
					resp, err := r.tryNext(time.Minute)
					if err != nil {
						b.Error(err)
						break
					}
					n += len(resp.Events)
				}
				got <- n
			}()
			for i := 0; i < b.N; i++ {
				src.put(fmt.Sprintf("p/%d", i%100), "value-of-some-bytes")
			}
			n := <-got
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
