package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metastore/metastore/engine"
)

// TestLoadRev checks where Open finds the current revision: the key of
// the last event list, or mvcc/current_rev as stores written before the
// event key took its place kept it, whichever is larger.
func TestLoadRev(t *testing.T) {
	for _, tc := range []struct {
		name    string
		puts    int
		metaRev int64 // 0: no mvcc/current_rev
		want    int64
	}{
		{name: "empty", want: 1},
		{name: "events", puts: 3, want: 4},
		{name: "legacy meta only", metaRev: 7, want: 7},
		{name: "events newer than legacy meta", puts: 3, metaRev: 2, want: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openEngine(t, t.TempDir())
			defer db.Close()
			s := openStore(t, db, testCfg())
			for i := 0; i < tc.puts; i++ {
				if _, err := s.Put(uint64(i+1), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.metaRev != 0 {
				b := db.NewBatch()
				b.Put(engine.CFMeta, metaCurrentRev, encodeU64(uint64(tc.metaRev)))
				if err := db.Write(b, false); err != nil {
					t.Fatal(err)
				}
			}
			s = openStore(t, db, testCfg())
			defer s.Close()
			if got := s.Rev(); got != tc.want {
				t.Fatalf("Rev() = %d, want %d", got, tc.want)
			}
		})
	}
}
