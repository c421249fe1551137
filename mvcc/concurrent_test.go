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

	"github.com/metastore/metastore/engine"
)

// TestConcurrentReadsDuringCompaction: while one goroutine applies writes
// and compactions, readers repeat ranges at fixed revisions; each answer
// must equal the first one for that revision until the revision is
// compacted, and then fail with ErrCompacted. Current-revision reads never
// fail.
func TestConcurrentReadsDuringCompaction(t *testing.T) {
	db := openEngine(t, t.TempDir())
	s := openStore(t, db, Config{CompactionBatchLimitRevs: 4, CompactionBatchInterval: 1, CompactionBusyPercent: 100})
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
	model := map[string]string{} // the live keys and their values
	for i := 1; i <= writes; i++ {
		k := []byte(fmt.Sprintf("k%02d", rnd.Intn(40)))
		var err error
		switch {
		case rnd.Intn(5) == 0:
			_, err = s.DeleteRange(uint64(i), &pb.DeleteRangeRequest{Key: k})
			delete(model, string(k))
		case rnd.Intn(50) == 0 && s.Rev() > 10:
			_, err = s.Compact(uint64(i), s.Rev()-int64(rnd.Intn(10)))
			if errors.Is(err, ErrCompacted) {
				err = nil
			}
		default:
			_, err = s.Put(uint64(i), &pb.PutRequest{Key: k, Value: []byte(fmt.Sprint(i))})
			model[string(k)] = fmt.Sprint(i)
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

	// Compacting everything leaves exactly the live keys: no tombstone the
	// walks raced with writers over survives in kv or history, and no live
	// version was taken for one.
	s.Put(writes+1, &pb.PutRequest{Key: []byte("z"), Value: []byte("end")}) // the target's tombstone, if any, stays
	model["z"] = "end"
	done, err := s.Compact(writes+2, s.Rev())
	if err != nil {
		t.Fatal(err)
	}
	<-done
	resp, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != len(model) {
		t.Errorf("%d live keys after compaction, want %d", len(resp.Kvs), len(model))
	}
	for _, kv := range resp.Kvs {
		if want, ok := model[string(kv.Key)]; !ok || want != string(kv.Value) {
			t.Errorf("key %s = %q after compaction, want %q (live %t)", kv.Key, kv.Value, want, ok)
		}
	}
	for _, cf := range []engine.CF{engine.CFKV, engine.CFHistory} {
		it, err := db.NewIterator(cf, engine.IterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		it.Close()
		want := len(model)
		if cf == engine.CFHistory {
			want = 0
		}
		if n != want {
			t.Errorf("%d records in %s after compacting everything, want %d", n, cf, want)
		}
	}
}
