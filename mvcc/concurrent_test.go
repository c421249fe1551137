package mvcc

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestConcurrentReadsDuringCompaction: while one goroutine applies writes
// and compactions, readers repeat ranges at fixed revisions; each answer
// must equal the first one for that revision until the revision is
// compacted, and then fail with ErrCompacted. Current-revision reads never
// fail.
func TestConcurrentReadsDuringCompaction(t *testing.T) {
	db := openEngine(t, t.TempDir())
	s := openStore(t, db, Config{CompactionBatchLimitRevs: 4, CompactionBatchInterval: 1})
	defer func() {
		s.Close()
		db.Close()
	}()
	const writes = 3000
	var stop atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(seed))
			seen := map[int64]string{}
			for !stop.Load() {
				lo := max(s.CompactedRev(), 1)
				rev := lo + rnd.Int63n(s.Rev()-lo+1)
				req := &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: rev}
				if rnd.Intn(4) == 0 {
					req.Revision = 0
				}
				resp, err := s.Range(context.Background(), req)
				if req.Revision == 0 {
					if err != nil {
						errc <- fmt.Errorf("current read: %w", err)
						return
					}
					continue
				}
				if errors.Is(err, ErrCompacted) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				resp.Header = nil
				got := fmtResp(resp, 0)
				if want, ok := seen[rev]; ok && want != got {
					errc <- fmt.Errorf("range at %d changed:\n%s\nthen:\n%s", rev, want, got)
					return
				}
				seen[rev] = got
			}
		}(int64(r))
	}
	rnd := rand.New(rand.NewSource(1))
	for i := 1; i <= writes; i++ {
		k := []byte(fmt.Sprintf("k%02d", rnd.Intn(40)))
		var err error
		switch {
		case rnd.Intn(5) == 0:
			_, err = s.DeleteRange(uint64(i), &pb.DeleteRangeRequest{Key: k})
		case rnd.Intn(50) == 0 && s.Rev() > 10:
			_, err = s.Compact(uint64(i), s.Rev()-int64(rnd.Intn(10)))
			if errors.Is(err, ErrCompacted) {
				err = nil
			}
		default:
			_, err = s.Put(uint64(i), &pb.PutRequest{Key: k, Value: []byte(fmt.Sprint(i))})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}
