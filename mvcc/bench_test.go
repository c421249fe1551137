package mvcc

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/tuning"
)

// Benchmarks: go test -run '^$' -bench . -benchmem ./mvcc
// Sizes come from environment variables so the default run stays short:
//
//	MVCC_BENCH_KEYS   keys preloaded for the read benchmarks (default 100000)
//	MVCC_COMPACT_REVS revisions of BenchmarkCompact1MRevisions (default 1000000)
//	MVCC_SPACE_KEYS   keys of the space measurement (default 50000)
//	MVCC_COUNT_KEYS   keys of BenchmarkCountOnlyFlushed (default 1000000)

const benchValueBytes = 256

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// startCPU starts measuring the process's CPU time (user and system, all
// threads: RocksDB's flushes and the GC included) and returns a function
// that reports it per op as cpu-ns/op. Call it after setup, next to
// ResetTimer. The targets are CPU budgets, and CPU time is less disturbed
// than ns/op by other load on a shared machine.
func startCPU(b *testing.B) (stop func()) {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchKey(i int) []byte { return []byte(fmt.Sprintf("/registry/pods/ns%03d/pod-%08d", i%100, i)) }

func benchValue(rnd *rand.Rand) []byte {
	v := make([]byte, benchValueBytes)
	rnd.Read(v)
	return v
}

func benchStore(b testing.TB) (*Store, *engine.DB) { return benchStoreCfg(b, Config{}) }

func benchStoreCfg(b testing.TB, cfg Config) (*Store, *engine.DB) {
	o := tuning.Default()
	o.Statistics = false
	db, err := engine.Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(db, cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.Close()
		db.Close()
	})
	return s, db
}

// load puts keys [0, n) once, then overwrites the first overwrite of them.
func load(b testing.TB, s *Store, n, overwrite int) {
	rnd := rand.New(rand.NewSource(1))
	idx := s.AppliedIndex()
	for round := 0; round < 2; round++ {
		m := n
		if round == 1 {
			m = overwrite
		}
		for i := 0; i < m; i++ {
			idx++
			if _, err := s.Put(idx, &pb.PutRequest{Key: benchKey(i), Value: benchValue(rnd)}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPut applies one Put per op (256-byte value, keys cycling over
// 1M distinct keys: creations for the first 1M ops); writes are unsynced,
// as on the apply path. BenchmarkPutNoCountIndex is the same without the
// count index, whose cost is in the creations.
func BenchmarkPut(b *testing.B) { benchPut(b, Config{}) }

func BenchmarkPutNoCountIndex(b *testing.B) { benchPut(b, Config{CountIndexBucketKeys: -1}) }

func benchPut(b *testing.B, cfg Config) {
	s, _ := benchStoreCfg(b, cfg)
	rnd := rand.New(rand.NewSource(1))
	vals := make([][]byte, 64)
	for i := range vals {
		vals[i] = benchValue(rnd)
	}
	const distinctKeys = 1_000_000
	keys := make([][]byte, 0, 4096)
	for i := 0; i < 4096; i++ {
		keys = append(keys, benchKey(rnd.Intn(distinctKeys)))
	}
	b.SetBytes(benchValueBytes)
	b.ReportAllocs()
	b.ResetTimer()
	defer startCPU(b)()
	for i := 0; i < b.N; i++ {
		req := &pb.PutRequest{Key: benchKey(i % distinctKeys), Value: vals[i%len(vals)]}
		if _, err := s.Put(uint64(i+1), req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetLatest(b *testing.B) { benchGetLatest(b, false) }

// BenchmarkGetLatestFlushed is BenchmarkGetLatest with the keys flushed
// to SST files (and the block cache warm), where most keys of a
// long-running store are: the lookup goes through the bloom filter and
// the block cache instead of a 100k-entry memtable skiplist.
func BenchmarkGetLatestFlushed(b *testing.B) { benchGetLatest(b, true) }

func benchGetLatest(b *testing.B, flush bool) {
	n := envInt("MVCC_BENCH_KEYS", 100_000)
	s, db := benchStore(b)
	load(b, s, n, 0)
	ctx := context.Background()
	if flush {
		flushAndWarm(b, s, db, func(i int) *pb.RangeRequest { return &pb.RangeRequest{Key: benchKey(i)} }, n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer startCPU(b)()
	for i := 0; i < b.N; i++ {
		resp, err := s.Range(ctx, &pb.RangeRequest{Key: benchKey((i * 7919) % n)})
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatal(err, resp)
		}
	}
}

// flushAndWarm flushes the memtables to SST files and reads req(i) for i
// in [0, n) so that the blocks are in the block cache.
func flushAndWarm(b *testing.B, s *Store, db *engine.DB, req func(i int) *pb.RangeRequest, n int) {
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := s.Range(context.Background(), req(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetOldRev reads keys at the revision before their overwrite,
// through CFHistory.
func BenchmarkGetOldRev(b *testing.B) {
	n := envInt("MVCC_BENCH_KEYS", 100_000)
	s, _ := benchStore(b)
	load(b, s, n, n)
	old := int64(n + 1) // every key's first version, none of the overwrites
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	defer startCPU(b)()
	for i := 0; i < b.N; i++ {
		resp, err := s.Range(ctx, &pb.RangeRequest{Key: benchKey((i * 7919) % n), Revision: old})
		if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 {
			b.Fatal(err, resp)
		}
	}
}

// BenchmarkRange1000 reads 1000 consecutive keys at the latest revision
// (count over the whole prefix of MVCC_BENCH_KEYS/100 keys included).
func BenchmarkRange1000(b *testing.B) { benchRange1000(b, false) }

// BenchmarkRange1000Flushed is BenchmarkRange1000 with the keys flushed to
// SST files: the scan walks data blocks instead of a memtable skiplist
// whose nodes are scattered in memory.
func BenchmarkRange1000Flushed(b *testing.B) { benchRange1000(b, true) }

func benchRange1000(b *testing.B, flush bool) {
	n := envInt("MVCC_BENCH_KEYS", 100_000)
	s, db := benchStore(b)
	load(b, s, n, 0)
	ctx := context.Background()
	req := &pb.RangeRequest{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), Limit: 1000}
	if flush {
		flushAndWarm(b, s, db, func(int) *pb.RangeRequest { return req }, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer startCPU(b)()
	for i := 0; i < b.N; i++ {
		resp, err := s.Range(ctx, req)
		if err != nil || len(resp.Kvs) != 1000 || resp.Count != int64(n) {
			b.Fatal(err, len(resp.Kvs))
		}
	}
}

// BenchmarkCountOnlyFlushed counts MVCC_COUNT_KEYS keys (256-byte values,
// flushed to SST files, block cache warm) with one count_only range: the
// counting phase that every page of a paginated list pays for the keys
// after the page. It reports ns per key counted. Each call loads the keys
// again (about 1M Puts), so run it with a fixed -benchtime, e.g.
//
//	go test -run '^$' -bench CountOnlyFlushed -benchtime 20x -count 3 ./mvcc
func BenchmarkCountOnlyFlushed(b *testing.B) {
	n := envInt("MVCC_COUNT_KEYS", 1_000_000)
	s, db := benchStoreCfg(b, Config{CountIndexBucketKeys: -1}) // the walk
	req := &pb.RangeRequest{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), CountOnly: true}
	countStoreFlushed(b, s, db, n, req)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	defer startCPU(b)()
	for i := 0; i < b.N; i++ {
		resp, err := s.Range(ctx, req)
		if err != nil || resp.Count != int64(n) {
			b.Fatal(err, resp.GetCount())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
}

// BenchmarkPageOfAll serves Kubernetes' list page: the first 100 keys of
// a prefix of MVCC_COUNT_KEYS keys (flushed, block cache warm) and the
// count of all of them, with the count index (index) and by walking
// (walk). A page at the current revision (current) and at a revision
// 1000 writes back, as a list's continuation pages read (older), where
// the index corrects its counts by those writes' events.
//
//	go test -run '^$' -bench PageOfAll -benchtime 20x ./mvcc
//
// (a walk of 1M keys takes about 0.4 s a page).
func BenchmarkPageOfAll(b *testing.B) {
	n := envInt("MVCC_COUNT_KEYS", 1_000_000)
	for _, mode := range []struct {
		name   string
		bucket int
	}{{"index", 0}, {"walk", -1}} {
		b.Run(mode.name, func(b *testing.B) {
			s, db := benchStoreCfg(b, Config{CountIndexBucketKeys: mode.bucket})
			req := &pb.RangeRequest{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), Limit: 100}
			countStoreFlushed(b, s, db, n, req)
			old := s.Rev()
			rnd := rand.New(rand.NewSource(2))
			idx := s.AppliedIndex()
			for i := 0; i < 1000; i++ { // overwrites, creates and deletes after old
				idx++
				var err error
				switch k := benchKey(rnd.Intn(n + n/10)); i % 4 {
				case 0:
					_, err = s.DeleteRange(idx, &pb.DeleteRangeRequest{Key: k})
				default:
					_, err = s.Put(idx, &pb.PutRequest{Key: k, Value: benchValue(rnd)})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			for _, at := range []struct {
				name string
				rev  int64
			}{{"current", 0}, {"older", old}} {
				b.Run(at.name, func(b *testing.B) {
					r := *req
					r.Revision = at.rev
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						resp, err := s.Range(ctx, &r)
						if err != nil || len(resp.Kvs) != 100 || resp.Count < int64(n)*9/10 {
							b.Fatal(err, resp.GetCount())
						}
					}
				})
			}
		})
	}
}

// countStoreFlushed loads n keys into s, flushed and compacted into one
// sorted run, with req's blocks in the cache.
func countStoreFlushed(b *testing.B, s *Store, db *engine.DB, n int, req *pb.RangeRequest) {
	load(b, s, n, 0)
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	// One sorted run, as most keys of a large store are, and no
	// compaction of the loaded L0 files running beside the counts.
	if err := db.CompactRange(engine.CFKV, nil, nil); err != nil {
		b.Fatal(err)
	}
	flushAndWarm(b, s, db, func(int) *pb.RangeRequest { return req }, 1)
}

// BenchmarkCompact1MRevisions writes MVCC_COMPACT_REVS revisions (10
// overwrites of a tenth as many keys) and times compacting all of them,
// CompactRange included; it reports ns per revision.
func BenchmarkCompact1MRevisions(b *testing.B) {
	revs := envInt("MVCC_COMPACT_REVS", 1_000_000)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, _ := benchStore(b)
		load10(b, s, revs/10)
		b.StartTimer()
		done, err := s.Compact(s.AppliedIndex()+1, s.Rev())
		if err != nil {
			b.Fatal(err)
		}
		<-done
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(revs), "ns/rev")
}

// load10 writes n keys 10 times each.
func load10(b testing.TB, s *Store, n int) {
	rnd := rand.New(rand.NewSource(1))
	idx := s.AppliedIndex()
	for round := 0; round < 10; round++ {
		for i := 0; i < n; i++ {
			idx++
			if _, err := s.Put(idx, &pb.PutRequest{Key: benchKey(i), Value: benchValue(rnd)}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// spaceRatio overwrites n keys 10 times, compacts to the latest revision,
// flushes and compacts the engine, and returns live SST bytes over the
// bytes of one copy of the keys and values.
func spaceRatio(b testing.TB, n int) (ratio float64, live uint64) {
	s, db := benchStore(b)
	load10(b, s, n)
	done, err := s.Compact(s.AppliedIndex()+1, s.Rev())
	if err != nil {
		b.Fatal(err)
	}
	<-done
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	for cf := engine.CF(0); cf < engine.NumCFs; cf++ {
		if err := db.CompactRange(cf, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	st, err := db.Stats()
	if err != nil {
		b.Fatal(err)
	}
	var one uint64
	for i := 0; i < n; i++ {
		one += uint64(len(benchKey(i)) + benchValueBytes)
	}
	return float64(st.LiveSSTBytes) / float64(one), st.LiveSSTBytes
}

func BenchmarkSpace(b *testing.B) {
	n := envInt("MVCC_SPACE_KEYS", 50_000)
	var ratio float64
	for i := 0; i < b.N; i++ {
		ratio, _ = spaceRatio(b, n)
	}
	b.ReportMetric(ratio, "live/one-copy")
}

// TestSpaceAfterCompaction checks the space target (live SST bytes at most
// 1.5 times one copy of the data after 10 overwrites and a compaction to
// the latest revision) at MVCC_SPACE_KEYS/10 keys.
func TestSpaceAfterCompaction(t *testing.T) {
	n := envInt("MVCC_SPACE_KEYS", 50_000) / 10
	ratio, live := spaceRatio(t, n)
	t.Logf("%d keys x 10 overwrites: live SST %d bytes, %.3f x one copy", n, live, ratio)
	if ratio > 1.5 {
		t.Fatalf("live SST bytes %.3f x one copy, want <= 1.5", ratio)
	}
}

// BenchmarkGetAtScale is a point get of a random key among
// MVCC_SCALE_KEYS keys (default 1M) of 16 bytes with 256-byte values that
// compress as bench-scale's do (one printable pseudo-random value for all
// keys), loaded in txns of 128 puts and compacted into the bottommost
// level, where a large store's keys are: with more keys than the block
// cache holds, most gets read and decompress a data block. Engine options
// over the default preset come from MVCC_ENGINE_OPTIONS ("key=value,..."),
// e.g.
//
//	MVCC_SCALE_KEYS=5000000 MVCC_ENGINE_OPTIONS=bottommost-compression=zstd \
//	  go test -run '^$' -bench GetAtScale -benchtime 500000x ./mvcc
func BenchmarkGetAtScale(b *testing.B) {
	n := envInt("MVCC_SCALE_KEYS", 1_000_000)
	o := tuning.Default()
	if text := os.Getenv("MVCC_ENGINE_OPTIONS"); text != "" {
		var err error
		if o, err = tuning.Parse(strings.ReplaceAll(text, ",", "\n")); err != nil {
			b.Fatal(err)
		}
	}
	o.Statistics = false
	db, err := engine.Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(db, Config{}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.Close(); db.Close() }()
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rnd := rand.New(rand.NewSource(1))
	val := make([]byte, benchValueBytes)
	for i := range val {
		val[i] = alphabet[rnd.Intn(len(alphabet))]
	}
	key := func(i int) []byte { return []byte(fmt.Sprintf("%016d", i)) }
	idx := s.AppliedIndex()
	for i := 0; i < n; i += 128 {
		t := &pb.TxnRequest{}
		for j := i; j < min(i+128, n); j++ {
			t.Success = append(t.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
				RequestPut: &pb.PutRequest{Key: key(j), Value: val}}})
		}
		idx++
		if _, err := s.Txn(idx, t); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.CompactRange(engine.CFKV, nil, nil); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	get := func() {
		resp, err := s.Range(ctx, &pb.RangeRequest{Key: key(rnd.Intn(n))})
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatal(err, resp)
		}
	}
	for i := 0; i < min(n, 200_000); i++ { // warm the caches
		get()
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer startCPU(b)()
	for i := 0; i < b.N; i++ {
		get()
	}
}
