package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/protoadapt"
)

// The differential tests drive a real etcd (the oracle, from ETCD_BIN_DIR
// or scripts/etcd.sh) and a single-member MetaStore with the same requests
// over etcd's gRPC API, through clientv3's connection, and require the same
// answers. Only what legitimately differs between two clusters is
// normalized away: cluster_id, member_id and raft_term in headers, a
// lease's remaining TTL (within leaseTTLSlackSeconds), the order of the
// lists etcd builds from Go maps (LeaseLeases, LeaseTimeToLive's keys), and
// how watch events are batched into responses (see watcherLog). Requests
// that crash etcd are kept out of the random sequence (txnWithoutCrash).
// Replay a failure with the seed it prints:
//
//	go test -run TestDifferential -diff.seed=N -diff.ops=M .

var (
	diffSeed = flag.Uint64("diff.seed", 0, "TestDifferential: seed of the operation sequence (0: pick one and print it)")
	diffOps  = flag.Int("diff.ops", 1500, "TestDifferential: number of random operations")
	diffLog  = flag.Bool("diff.log", false, "TestDifferential*: log every operation and etcd's answer")
)

const (
	// diffOpTimeout bounds one operation on one side.
	diffOpTimeout = 15 * time.Second
	// diffSyncTimeout bounds the wait for a watch stream to deliver every
	// event up to a revision.
	diffSyncTimeout = 15 * time.Second
	// diffProgressRetry is how often a progress request is resent: etcd
	// drops one that arrives while a watcher of the stream is unsynced.
	diffProgressRetry = 200 * time.Millisecond
	// diffQuietWait is how long a stream that cannot be synced by a
	// progress request (see diffStreamNow) is left to deliver before
	// comparing.
	diffQuietWait = time.Second
	// diffScriptWait is how long a watchScript collects answers after its
	// last step: etcd syncs unsynced watchers every 100ms.
	diffScriptWait = 500 * time.Millisecond
	// leaseTTLSlackSeconds: remaining lease TTLs of the two servers may
	// differ by this much (they count from slightly different instants).
	leaseTTLSlackSeconds = 2
	// diffMaxTxnOps is etcd's default --max-txn-ops, which both run with.
	diffMaxTxnOps = 128
	// diffSyncKey is written by each sync: a watcher can only be synced by
	// a progress request once the store reached its start revision.
	diffSyncKey = "~sync"
)

// diffKeys is the random key space: few keys, prefixes of one another, so
// that ranges, prefixes and from-key reads overlap, and binary bytes.
var diffKeys = []string{
	"a", "a/", "a/1", "a/2", "a/2/x", "ab", "b", "b\x00", "b\x00\x01", "c",
	"\x00", "\x01", "\xfe", "\xff", "\xff\xff", "k\xffz", diffSyncKey,
}

var diffValues = []string{"", "", "v", "v2", "value-3", "\x00", "\xff\x00\xfe", strings.Repeat("x", 200)}

// diffLeaseIDs are the lease IDs granted explicitly, so both sides agree.
var diffLeaseIDs = []int64{1, 2, 3, 0x1234, 1 << 40, 1<<63 - 1}

// diffLeaseTTLs are long enough that no lease expires during the test
// (expiry would happen at different instants on the two sides).
var diffLeaseTTLs = []int64{120, 300, 3600}

// TestDifferential runs a seeded random sequence of KV, lease and watch
// operations against etcd and MetaStore and fails at the first answer that
// differs, then compares every watcher's full event stream.
func TestDifferential(t *testing.T) {
	t.Parallel()
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -run 'TestDifferential$' -diff.seed=%d -diff.ops=%d .)", seed, seed, *diffOps)
	ref, sut := startDiffPair(t)
	g := newDiffGen(seed)
	type count struct{ ops, errs int }
	counts := map[string]*count{}
	run := func(i int, op *diffOp) {
		t.Helper()
		a, b := runBoth(ref, sut, op)
		if !a.matches(b) {
			t.Fatalf("op %d differs (seed %d)\nop: %s\n%s", i, seed, op.desc, diffReport(a, b))
		}
		g.observe(op, a)
		kind := strings.Fields(op.desc)[0]
		if counts[kind] == nil {
			counts[kind] = &count{}
		}
		counts[kind].ops++
		if a.err || a.refused {
			counts[kind].errs++
		}
	}
	start := time.Now()
	i := 0
	for ; i < *diffOps; i++ {
		run(i, g.next())
	}
	for op := g.final(); op != nil; op = g.final() {
		run(i, op)
		i++
	}
	for _, st := range []*diffTarget{ref, sut} {
		st.drain(g)
	}
	if len(ref.watchers) != len(sut.watchers) {
		t.Fatalf("watchers: etcd %d, metastore %d", len(ref.watchers), len(sut.watchers))
	}
	events := 0
	for w := range ref.watchers {
		a, b := ref.watcherLog(w), sut.watcherLog(w)
		if !a.matches(b) {
			t.Fatalf("watcher %d (seed %d) received different streams\nwatch: %s\n%s", w, seed, g.watchers[w].desc, diffReport(a, b))
		}
		events += strings.Count(a.text, "\nevent ")
	}
	var kinds []string
	for k, c := range counts {
		kinds = append(kinds, fmt.Sprintf("%s %d (%d failed)", k, c.ops, c.errs))
	}
	sort.Strings(kinds)
	t.Logf("%d operations, final revision %d, %d watchers, %d watch events, identical in %v\n%s",
		i, g.rev, len(ref.watchers), events, time.Since(start).Round(time.Millisecond), strings.Join(kinds, ", "))
}

// TestDifferentialErrors sends targeted requests, mostly invalid, and
// requires the same answers, errors compared by gRPC code and message.
func TestDifferentialErrors(t *testing.T) {
	t.Parallel()
	ref, sut := startDiffPair(t)
	put := func(k, v string) *diffOp { return kvPut(&pb.PutRequest{Key: []byte(k), Value: []byte(v)}) }
	rng := func(r *pb.RangeRequest) *diffOp { return kvRange(r) }
	txn := func(r *pb.TxnRequest) *diffOp { return kvTxn(r) }
	puts := func(n int, key func(i int) string) []*pb.RequestOp {
		ops := make([]*pb.RequestOp, n)
		for i := range ops {
			ops[i] = opPut(&pb.PutRequest{Key: []byte(key(i))})
		}
		return ops
	}
	big := strings.Repeat("x", 1600*1024)      // above --max-request-bytes, below gRPC's limit
	huge := strings.Repeat("x", 2*1024*1024+1) // above gRPC's receive limit
	cases := []struct {
		name string
		op   *diffOp
	}{
		{"put-empty-key", put("", "v")},
		{"range-empty-key", rng(&pb.RangeRequest{})},
		{"delete-empty-key", kvDelete(&pb.DeleteRangeRequest{})},
		{"seed-keys-1", put("k1", "v1")},
		{"seed-keys-2", put("k2", "v2")},
		{"seed-keys-3", put("k1", "v3")},
		{"range-end-below-key", rng(&pb.RangeRequest{Key: []byte("k2"), RangeEnd: []byte("k1")})},
		{"range-end-equals-key", rng(&pb.RangeRequest{Key: []byte("k1"), RangeEnd: []byte("k1")})},
		{"delete-end-below-key", kvDelete(&pb.DeleteRangeRequest{Key: []byte("k2"), RangeEnd: []byte("k1"), PrevKv: true})},
		{"range-future-rev", rng(&pb.RangeRequest{Key: []byte("k1"), Revision: 100})},
		{"range-negative-rev", rng(&pb.RangeRequest{Key: []byte("k1"), Revision: -1})},
		{"range-bad-sort-order", rng(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), SortOrder: 7})},
		{"range-bad-sort-target", rng(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), SortTarget: 9})},
		{"range-negative-limit", rng(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: -1})},
		{"put-ignore-value-with-value", kvPut(&pb.PutRequest{Key: []byte("k1"), Value: []byte("v"), IgnoreValue: true})},
		{"put-ignore-lease-with-lease", kvPut(&pb.PutRequest{Key: []byte("k1"), Lease: 1, IgnoreLease: true})},
		{"put-ignore-value-missing-key", kvPut(&pb.PutRequest{Key: []byte("nokey"), IgnoreValue: true})},
		{"put-ignore-lease-missing-key", kvPut(&pb.PutRequest{Key: []byte("nokey"), IgnoreLease: true})},
		{"put-ignore-value-existing", kvPut(&pb.PutRequest{Key: []byte("k1"), IgnoreValue: true, PrevKv: true})},
		{"put-missing-lease", kvPut(&pb.PutRequest{Key: []byte("k1"), Lease: 99})},
		{"put-request-too-large", put("big", big)},
		{"put-over-grpc-limit", &diffOp{desc: "put of 2MiB+1 (client send limit raised)", run: func(ctx context.Context, tg *diffTarget) diffResult {
			resp, err := tg.bigKV.Put(ctx, &pb.PutRequest{Key: []byte("huge"), Value: []byte(huge)})
			return respResult(resp, err)
		}}},
		{"txn-too-many-ops", txn(&pb.TxnRequest{Success: puts(diffMaxTxnOps+1, func(i int) string { return fmt.Sprint("t", i) })})},
		{"txn-max-ops", txn(&pb.TxnRequest{Success: puts(diffMaxTxnOps, func(i int) string { return fmt.Sprint("t", i) })})},
		{"txn-too-many-compares", txn(&pb.TxnRequest{Compare: slices.Repeat([]*pb.Compare{{Key: []byte("k1"), Target: pb.Compare_VERSION}}, diffMaxTxnOps+1)})},
		{"txn-too-many-ops-nested", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Failure: puts(diffMaxTxnOps+1, func(i int) string { return fmt.Sprint("n", i) })})}})},
		{"txn-duplicate-put", txn(&pb.TxnRequest{Success: puts(2, func(int) string { return "d" })})},
		{"txn-put-in-deleted-range", txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			opDelete(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}), opPut(&pb.PutRequest{Key: []byte("b")})}})},
		{"txn-put-in-nested-deleted-range", txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			opDelete(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}),
			opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("b")})}})}})},
		{"txn-same-put-both-nested-branches", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("k1"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}},
			Success: puts(1, func(int) string { return "same" }), Failure: puts(1, func(int) string { return "same" })})}})},
		{"txn-delete-from-key-nul", txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			opDelete(&pb.DeleteRangeRequest{Key: []byte("zz"), RangeEnd: []byte{0}}), opPut(&pb.PutRequest{Key: []byte("zzz")})}})},
		{"txn-empty-request-op", txn(&pb.TxnRequest{Success: []*pb.RequestOp{{}}})},
		{"txn-compare-empty-key", txn(&pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VALUE}}})},
		{"txn-range-future-rev", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("x")}), opRange(&pb.RangeRequest{Key: []byte("k1"), Revision: 1000})}})},
		{"txn-put-missing-lease", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("x"), Lease: 77})}})},
		{"txn-put-ignore-value-missing", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("nokey"), IgnoreValue: true})}})},
		{"txn-put-ignore-value-after-put", txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("new1"), Value: []byte("v")})}}),
			opPut(&pb.PutRequest{Key: []byte("new2"), IgnoreValue: true})}})},
		{"txn-range-compare-value-none", txn(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("q"), RangeEnd: []byte("r"), Target: pb.Compare_VALUE, Result: pb.Compare_NOT_EQUAL}},
			Success: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: []byte("k1")})}, Failure: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: []byte("k2")})}})},
		{"txn-compare-mismatched-union", txn(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k1"), Target: pb.Compare_VALUE, TargetUnion: &pb.Compare_Version{Version: 2}}}})},
		{"compact-future", kvCompact(&pb.CompactionRequest{Revision: 1000})},
		{"compact-zero", kvCompact(&pb.CompactionRequest{Revision: 0})},
		{"compact-3", kvCompact(&pb.CompactionRequest{Revision: 3, Physical: true})},
		{"compact-same", kvCompact(&pb.CompactionRequest{Revision: 3})},
		{"compact-below", kvCompact(&pb.CompactionRequest{Revision: 2})},
		{"range-compacted", rng(&pb.RangeRequest{Key: []byte("k1"), Revision: 2})},
		{"range-at-compacted", rng(&pb.RangeRequest{Key: []byte("k1"), Revision: 3})},
		{"txn-range-compacted", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: []byte("k1"), Revision: 1})}})},
		{"txn-write-range-compacted", txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("y")}), opRange(&pb.RangeRequest{Key: []byte("k1"), Revision: 1})}})},
		{"lease-grant-ttl-too-large", leaseGrant(&pb.LeaseGrantRequest{ID: 5, TTL: 9_000_000_001})},
		{"lease-grant-max-ttl", leaseGrant(&pb.LeaseGrantRequest{ID: 6, TTL: 9_000_000_000})},
		{"lease-grant-negative-id", leaseGrant(&pb.LeaseGrantRequest{ID: -5, TTL: 60})},
		{"lease-grant", leaseGrant(&pb.LeaseGrantRequest{ID: 7, TTL: 60})},
		{"lease-grant-existing", leaseGrant(&pb.LeaseGrantRequest{ID: 7, TTL: 60})},
		{"lease-grant-min-ttl", leaseGrant(&pb.LeaseGrantRequest{ID: 8, TTL: 1})},
		{"lease-revoke-min-ttl", leaseRevoke(8)},
		{"lease-grant-zero-ttl", leaseGrant(&pb.LeaseGrantRequest{ID: 9})},
		{"lease-revoke-zero-ttl", leaseRevoke(9)},
		{"lease-grant-negative-ttl", leaseGrant(&pb.LeaseGrantRequest{ID: 10, TTL: -5})},
		{"lease-revoke-negative-ttl", leaseRevoke(10)},
		{"lease-put-attached", kvPut(&pb.PutRequest{Key: []byte("lk"), Lease: 7})},
		{"lease-ttl", leaseTimeToLive(7, true)},
		{"lease-ttl-missing", leaseTimeToLive(123, true)},
		{"lease-keepalive-missing", leaseKeepAlive(123)},
		{"lease-keepalive", leaseKeepAlive(7)},
		{"lease-revoke-missing", leaseRevoke(123)},
		{"lease-revoke-zero", leaseRevoke(0)},
		{"lease-revoke", leaseRevoke(7)},
		{"lease-put-revoked", kvPut(&pb.PutRequest{Key: []byte("lk"), Lease: 7})},
		{"leases", leaseLeases()},
		// Watch creation and progress requests, each on a fresh stream.
		{"watch-negative-start", watchScript(nil, &pb.WatchCreateRequest{Key: []byte("k1"), StartRevision: -1})},
		{"watch-empty-range", watchScript(nil, &pb.WatchCreateRequest{Key: []byte("k2"), RangeEnd: []byte("k1")})},
		{"watch-empty-key", watchScript([]string{"\x00"}, &pb.WatchCreateRequest{})},
		{"watch-at-compacted", watchScript(nil, &pb.WatchCreateRequest{Key: []byte("k1"), StartRevision: 3, PrevKv: true})},
		{"watch-below-compacted", watchScript(nil, &pb.WatchCreateRequest{Key: []byte("k1"), StartRevision: 2})},
		{"watch-from-compaction-revision", watchFromCompaction()},
		{"progress-no-watchers", watchScript([]string{diffProgressStep})},
		{"progress-synced", watchScript([]string{"k1", diffProgressStep}, &pb.WatchCreateRequest{Key: []byte("k1")})},
		{"progress-future-watcher", watchScript([]string{diffProgressStep}, &pb.WatchCreateRequest{Key: []byte("k1"), StartRevision: 1000})},
		{"progress-after-compacted-watcher", watchScript([]string{"k1", diffProgressStep},
			&pb.WatchCreateRequest{Key: []byte("k1"), StartRevision: 2}, &pb.WatchCreateRequest{Key: []byte("k1")})},
	}
	// known: cases whose answers differ on purpose, and why. They are run
	// and their difference logged, not failed.
	known := map[string]string{
		"progress-after-compacted-watcher": "etcd 3.6 never again answers a progress request on a stream where a " +
			"watcher was canceled by compaction (the watcher stays in the stream's set but leaves the synced " +
			"group); MetaStore answers it. etcd also sends the compaction cancel on its next 100ms sync of " +
			"unsynced watchers, MetaStore right after the created response.",
	}
	for _, c := range cases {
		a, b := runBoth(ref, sut, c.op)
		why := known[c.name]
		switch {
		case why != "" && a.matches(b):
			t.Logf("%s: known difference not seen: %s", c.name, why)
		case why != "":
			t.Logf("%s: known difference: %s\nop: %s\n%s", c.name, why, c.op.desc, diffReport(a, b))
		case !a.matches(b):
			t.Errorf("%s differs\nop: %s\n%s", c.name, c.op.desc, diffReport(a, b))
		}
	}
	// etcd cannot answer these: they crash it. MetaStore's answers are
	// pinned instead, and must change nothing (the range after each
	// compares both again).
	crashesEtcd := []struct {
		name string
		op   *diffOp
		want string
	}{
		{"txn-ignore-value-put-after-from-key-delete", txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			opDelete(&pb.DeleteRangeRequest{Key: []byte("k1"), RangeEnd: []byte{0}}),
			opPut(&pb.PutRequest{Key: []byte("k1"), IgnoreValue: true})}}),
			"error code=InvalidArgument desc=\"etcdserver: key not found\"\n"},
		{"txn-ignore-lease-put-after-from-key-delete", txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			opDelete(&pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte{0}}),
			opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(&pb.PutRequest{Key: []byte("k2"), Value: []byte("v"), IgnoreLease: true})}})}}),
			"error code=InvalidArgument desc=\"etcdserver: key not found\"\n"},
	}
	for _, c := range crashesEtcd {
		ctx, cancel := context.WithTimeout(context.Background(), diffOpTimeout)
		got := c.op.run(ctx, sut)
		cancel()
		if got.text != c.want {
			t.Errorf("%s (etcd 3.6 panics on it)\nop: %s\ngot:  %swant: %s", c.name, c.op.desc, got, c.want)
		}
		check := rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		if a, b := runBoth(ref, sut, check); !a.matches(b) {
			t.Errorf("after %s\nop: %s\n%s", c.name, check.desc, diffReport(a, b))
		}
	}
}

// diffProgressStep in a watchScript's steps sends a progress request.
const diffProgressStep = "<progress>"

// watchScript opens a fresh watch stream, creates the watchers (each after
// the previous one's created response), then runs steps: a progress
// request, or a put of the named key. It answers everything the stream
// received within diffScriptWait of the last step.
func watchScript(steps []string, creates ...*pb.WatchCreateRequest) *diffOp {
	var desc strings.Builder
	desc.WriteString("WatchScript")
	for _, c := range creates {
		fmt.Fprintf(&desc, " create{%s}", compactOf(c))
	}
	for _, st := range steps {
		fmt.Fprintf(&desc, " %q", st)
	}
	return &diffOp{desc: desc.String(), run: func(ctx context.Context, tg *diffTarget) diffResult {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ws, err := tg.watch.Watch(ctx)
		if err != nil {
			return errResult(err)
		}
		var resps []*pb.WatchResponse
		recv := make(chan *pb.WatchResponse)
		go func() {
			defer close(recv)
			for {
				r, err := ws.Recv()
				if err != nil {
					return
				}
				select {
				case recv <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
		// collect receives until a response satisfies until (nil: none
		// does) or wait passes.
		collect := func(wait time.Duration, until func(*pb.WatchResponse) bool) {
			timer := time.NewTimer(wait)
			defer timer.Stop()
			for {
				select {
				case r, ok := <-recv:
					if !ok {
						return
					}
					resps = append(resps, r)
					if until != nil && until(r) {
						return
					}
				case <-timer.C:
					return
				}
			}
		}
		for _, c := range creates {
			if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: clone(c)}}); err != nil {
				return errResult(err)
			}
			collect(diffOpTimeout, func(r *pb.WatchResponse) bool { return r.Created })
		}
		for _, st := range steps {
			if st == diffProgressStep {
				if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
					return errResult(err)
				}
				continue
			}
			if _, err := tg.kv.Put(ctx, &pb.PutRequest{Key: []byte(st)}); err != nil {
				return errResult(err)
			}
		}
		collect(diffScriptWait, nil)
		var b strings.Builder
		for _, r := range resps {
			normHeader(r.Header)
			fmt.Fprintf(&b, "response %s", textOf(r))
		}
		return diffResult{text: b.String()}
	}}
}

// watchFromCompaction updates a key twice, compacts at the second update
// and watches the key with prev_kv from there: the first event's previous
// version is below the compaction revision.
func watchFromCompaction() *diffOp {
	const key = "wc"
	return &diffOp{desc: "WatchFromCompaction key:" + key, run: func(ctx context.Context, tg *diffTarget) diffResult {
		var rev int64
		for _, v := range []string{"1", "2"} {
			r, err := tg.kv.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte(v)})
			if err != nil {
				return errResult(err)
			}
			rev = r.Header.Revision
		}
		if _, err := tg.kv.Compact(ctx, &pb.CompactionRequest{Revision: rev, Physical: true}); err != nil {
			return errResult(err)
		}
		return watchScript(nil, &pb.WatchCreateRequest{Key: []byte(key), StartRevision: rev, PrevKv: true}).run(ctx, tg)
	}}
}

// startDiffPair starts etcd and a single-member MetaStore.
func startDiffPair(t *testing.T) (ref, sut *diffTarget) {
	t.Helper()
	m := startEtcd(t)
	// Buckets of two keys: every range of more than a few keys counts
	// through the count index (mvcc/countindex.go), splits and merges
	// follow most writes, and etcd's counts judge it.
	c := newCluster(t, 1, "--count-index-bucket-keys=2") // while etcd starts
	m.waitReady()
	return newDiffTarget(t, "etcd", m.clientURL), newDiffTarget(t, "metastore", c.members[0].clientURL)
}

// startEtcd starts one real etcd member on free ports, stopped at cleanup,
// without waiting for it to serve. It is a member (harness_test.go)
// running etcd's binary instead of ours.
func startEtcd(t testing.TB) *member {
	t.Helper()
	binaries(t)
	ports := freePorts(t, 2)
	m := &member{
		t:         t,
		name:      "oracle",
		dataDir:   filepath.Join(t.TempDir(), "etcd"),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		clusterSt: "new",
		log:       &syncBuffer{},
		exited:    make(chan struct{}),
		// Flags given twice: the last one wins, as with Go's flag package.
		extraArgs: []string{"--log-level=error"},
	}
	m.initialCl = m.name + "=" + m.peerURL
	m.cmd = exec.Command(filepath.Join(etcdBinDir, "etcd"), m.args()...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	// etcd reads ETCD_* variables as flags (ETCD_BIN_DIR among them).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			m.cmd.Env = append(m.cmd.Env, kv)
		}
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		m.exitErr = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		m.kill(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("etcd log:\n%s", m.log.String())
		}
	})
	return m
}

// diffTarget is one server under test: gRPC clients over a clientv3
// connection, and the watch streams opened on it.
type diffTarget struct {
	t     testing.TB
	name  string
	kv    pb.KVClient
	bigKV pb.KVClient // on a client allowed to send more than gRPC's default
	lease pb.LeaseClient
	watch pb.WatchClient
	// streams[i] is the stream of diffGen's stream i, opened on first use.
	streams  [diffNumStreams]*diffStream
	watchers []*diffWatcher // in creation order
}

func newDiffTarget(t testing.TB, name, url string) *diffTarget {
	t.Helper()
	// The clients' loggers would report every error answer as a failed
	// retry.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	big, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, MaxCallSendMsgSize: 8 << 20, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { big.Close() })
	conn := cli.ActiveConnection()
	return &diffTarget{t: t, name: name, kv: pb.NewKVClient(conn), bigKV: pb.NewKVClient(big.ActiveConnection()),
		lease: pb.NewLeaseClient(conn), watch: pb.NewWatchClient(conn)}
}

// diffResult is one side's normalized answer.
type diffResult struct {
	text string // everything that must match exactly
	// ttl is a remaining lease TTL, compared within leaseTTLSlackSeconds.
	ttl    int64
	hasTTL bool
	rev    int64 // header revision, for the generator; 0 if none
	err    bool
	// refused: a watch create answered created and canceled at once.
	refused bool
}

func (a diffResult) matches(b diffResult) bool {
	if a.text != b.text || a.hasTTL != b.hasTTL {
		return false
	}
	d := a.ttl - b.ttl
	return d <= leaseTTLSlackSeconds && d >= -leaseTTLSlackSeconds
}

func (a diffResult) String() string {
	if a.hasTTL {
		return a.text + fmt.Sprintf("remaining TTL: %d (±%d)\n", a.ttl, leaseTTLSlackSeconds)
	}
	return a.text
}

func diffReport(a, b diffResult) string {
	return fmt.Sprintf("--- etcd\n+++ metastore\n%s", lineDiff(a.String(), b.String()))
}

// diffOp is one operation, run on both sides at once.
type diffOp struct {
	desc string
	run  func(ctx context.Context, tg *diffTarget) diffResult
	// gen updates the generator's model from the (agreed) result.
	gen func(g *diffGen, r diffResult)
}

// diffSlowOp: an operation slower than this on either side is logged.
const diffSlowOp = 3 * time.Second

// runBoth runs op on both sides at once.
func runBoth(ref, sut *diffTarget, op *diffOp) (a, b diffResult) {
	var wg sync.WaitGroup
	wg.Add(2)
	var took [2]time.Duration
	for i, x := range []struct {
		tg  *diffTarget
		out *diffResult
	}{{ref, &a}, {sut, &b}} {
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), diffOpTimeout)
			defer cancel()
			start := time.Now()
			*x.out = op.run(ctx, x.tg)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	if *diffLog {
		ref.t.Logf("%s\n=> %s", op.desc, a)
	}
	if took[0] > diffSlowOp || took[1] > diffSlowOp {
		ref.t.Logf("slow: etcd %v, metastore %v: %.200s", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), op.desc)
	}
	return a, b
}

// Normalization and formatting.

// normHeader clears what differs between any two clusters.
func normHeader(h *pb.ResponseHeader) int64 {
	if h == nil {
		return 0
	}
	h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
	return h.Revision
}

func normTxn(r *pb.TxnResponse) {
	normHeader(r.Header)
	for _, op := range r.Responses {
		switch v := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			normHeader(v.ResponseRange.Header)
		case *pb.ResponseOp_ResponsePut:
			normHeader(v.ResponsePut.Header)
		case *pb.ResponseOp_ResponseDeleteRange:
			normHeader(v.ResponseDeleteRange.Header)
		case *pb.ResponseOp_ResponseTxn:
			normTxn(v.ResponseTxn)
		}
	}
}

func errResult(err error) diffResult {
	st := status.Convert(err)
	return diffResult{text: fmt.Sprintf("error code=%s desc=%q\n", st.Code(), st.Message()), err: true}
}

// respResult formats a response (its header normalized) or an error.
func respResult(resp proto.Message, err error) diffResult {
	if err != nil {
		return errResult(err)
	}
	if t, ok := resp.(*pb.TxnResponse); ok {
		normTxn(t) // the headers of its nested responses too
	}
	rev := normHeader(resp.(interface{ GetHeader() *pb.ResponseHeader }).GetHeader())
	return diffResult{text: fmt.Sprintf("%T\n%s", resp, textOf(resp)), rev: rev}
}

// textOf formats m for comparison and for people, one field a line.
func textOf(m proto.Message) string {
	return prototext.MarshalOptions{Multiline: true}.Format(protoadapt.MessageV2Of(m))
}

// compactOf formats m on one line.
func compactOf(m proto.Message) string {
	return prototext.MarshalOptions{}.Format(protoadapt.MessageV2Of(m))
}

// Operations.

// kvCall makes the operation that sends r with method m of the KV service.
func kvCall[Req, Resp proto.Message](name string, r Req, m func(pb.KVClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) *diffOp {
	desc := name + " " + compactOf(r)
	if name == "Txn" {
		desc = name + " " + textOf(r)
	}
	return &diffOp{desc: desc, run: func(ctx context.Context, tg *diffTarget) diffResult {
		resp, err := m(tg.kv, ctx, clone(r))
		return respResult(resp, err)
	}}
}

func kvPut(r *pb.PutRequest) *diffOp { return kvCall("Put", r, pb.KVClient.Put) }

func kvRange(r *pb.RangeRequest) *diffOp { return kvCall("Range", r, pb.KVClient.Range) }

func kvDelete(r *pb.DeleteRangeRequest) *diffOp {
	return kvCall("DeleteRange", r, pb.KVClient.DeleteRange)
}

func kvTxn(r *pb.TxnRequest) *diffOp { return kvCall("Txn", r, pb.KVClient.Txn) }

func kvCompact(r *pb.CompactionRequest) *diffOp {
	return kvCall("Compact", r, pb.KVClient.Compact)
}

func leaseGrant(r *pb.LeaseGrantRequest) *diffOp {
	return &diffOp{desc: "LeaseGrant " + compactOf(r), run: func(ctx context.Context, tg *diffTarget) diffResult {
		resp, err := tg.lease.LeaseGrant(ctx, clone(r))
		return respResult(resp, err)
	}}
}

func leaseRevoke(id int64) *diffOp {
	return &diffOp{desc: fmt.Sprintf("LeaseRevoke ID:%d", id), run: func(ctx context.Context, tg *diffTarget) diffResult {
		resp, err := tg.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
		return respResult(resp, err)
	}}
}

func leaseTimeToLive(id int64, keys bool) *diffOp {
	return &diffOp{desc: fmt.Sprintf("LeaseTimeToLive ID:%d keys:%v", id, keys), run: func(ctx context.Context, tg *diffTarget) diffResult {
		resp, err := tg.lease.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys})
		if err != nil {
			return errResult(err)
		}
		rev := normHeader(resp.Header)
		ttl := resp.TTL
		resp.TTL = 0
		// etcd lists the attached keys in map order.
		sort.Slice(resp.Keys, func(i, j int) bool { return bytes.Compare(resp.Keys[i], resp.Keys[j]) < 0 })
		return diffResult{text: "*etcdserverpb.LeaseTimeToLiveResponse\n" + textOf(resp), ttl: ttl, hasTTL: true, rev: rev}
	}}
}

func leaseLeases() *diffOp {
	return &diffOp{desc: "LeaseLeases", run: func(ctx context.Context, tg *diffTarget) diffResult {
		resp, err := tg.lease.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
		if err == nil {
			// etcd lists leases in map order.
			sort.Slice(resp.Leases, func(i, j int) bool { return resp.Leases[i].ID < resp.Leases[j].ID })
		}
		return respResult(resp, err)
	}}
}

// leaseKeepAlive sends one keepalive on a new stream.
func leaseKeepAlive(id int64) *diffOp {
	return &diffOp{desc: fmt.Sprintf("LeaseKeepAlive ID:%d", id), run: func(ctx context.Context, tg *diffTarget) diffResult {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := tg.lease.LeaseKeepAlive(ctx)
		if err != nil {
			return errResult(err)
		}
		if err := st.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			return errResult(err)
		}
		resp, err := st.Recv()
		st.CloseSend()
		return respResult(resp, err)
	}}
}

// clone gives each side its own copy of a request: both marshal it at once.
func clone[M proto.Message](m M) M { return proto.Clone(m).(M) }

func opRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opPut(r *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
}

func opDelete(r *pb.DeleteRangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func opTxn(r *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
}

// Watches.

// The watch streams. etcd answers a progress request only when every
// watcher of the stream is synced and has reached its start revision, and
// never again on a stream where a watcher was canceled by compaction (etcd
// 3.6 drops it from the synced and unsynced groups but not from the
// stream), so watchers are spread over streams by their start revision,
// and only diffStreamNow can always be synced.
const (
	diffStreamNow       = iota // start at or below the next revision
	diffStreamFuture           // start beyond the next revision
	diffStreamCompacted        // start below the compaction revision
	diffNumStreams
)

// diffStream is one Watch stream and every response received on it.
type diffStream struct {
	ws     pb.Watch_WatchClient
	notify chan struct{} // signaled after each receive
	mu     struct {
		sync.Mutex
		resps []*pb.WatchResponse
		err   error
	}
}

type diffWatcher struct {
	stream *diffStream
	id     int64
}

func (tg *diffTarget) stream(i int) (*diffStream, error) {
	if s := tg.streams[i]; s != nil {
		return s, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws, err := tg.watch.Watch(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &diffStream{ws: ws, notify: make(chan struct{}, 1)}
	tg.t.Cleanup(cancel)
	go func() {
		for {
			r, err := ws.Recv()
			s.mu.Lock()
			if err != nil {
				s.mu.err = err
			} else {
				s.mu.resps = append(s.mu.resps, r)
			}
			s.mu.Unlock()
			select {
			case s.notify <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	tg.streams[i] = s
	return s, nil
}

// waitFor waits until cond holds over the responses received so far, the
// stream fails, or timeout passes; it returns cond's last value.
func (s *diffStream) waitFor(timeout time.Duration, cond func([]*pb.WatchResponse) bool) (bool, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, err := cond(s.mu.resps), s.mu.err
		s.mu.Unlock()
		if ok || err != nil {
			return ok, err
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			return false, nil
		}
	}
}

func countResps(resps []*pb.WatchResponse, pred func(*pb.WatchResponse) bool) int {
	n := 0
	for _, r := range resps {
		if pred(r) {
			n++
		}
	}
	return n
}

// createWatch creates a watcher on stream i and waits for its created
// response, so that it is registered before the next operation. A watcher
// on diffStreamCompacted is canceled by compaction right after it is
// created; createWatch waits for that too.
func createWatch(i int, r *pb.WatchCreateRequest) *diffOp {
	desc := fmt.Sprintf("Watch stream:%d %s", i, compactOf(r))
	return &diffOp{desc: desc, run: func(ctx context.Context, tg *diffTarget) diffResult {
		s, err := tg.stream(i)
		if err != nil {
			tg.watchers = append(tg.watchers, &diffWatcher{id: -2, stream: &diffStream{}})
			return errResult(err)
		}
		isCreated := func(r *pb.WatchResponse) bool { return r.Created }
		s.mu.Lock()
		n := countResps(s.mu.resps, isCreated)
		s.mu.Unlock()
		if err := s.ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: clone(r)}}); err != nil {
			tg.watchers = append(tg.watchers, &diffWatcher{stream: s, id: -2})
			return errResult(err)
		}
		var created *pb.WatchResponse
		ok, err := s.waitFor(diffOpTimeout, func(resps []*pb.WatchResponse) bool {
			seen := 0
			for _, r := range resps {
				if r.Created {
					if seen == n {
						created = r
						return true
					}
					seen++
				}
			}
			return false
		})
		if !ok {
			tg.watchers = append(tg.watchers, &diffWatcher{stream: s, id: -2})
			return diffResult{text: fmt.Sprintf("no created response (stream error %v)\n", err), err: true}
		}
		tg.watchers = append(tg.watchers, &diffWatcher{stream: s, id: created.WatchId})
		c := *created
		c.Header = cloneHeader(c.Header)
		res := respResult(&c, nil)
		res.refused = c.Canceled
		if i != diffStreamCompacted || c.Canceled {
			return res
		}
		var canceled *pb.WatchResponse
		s.waitFor(diffOpTimeout, func(resps []*pb.WatchResponse) bool {
			for _, r := range resps {
				if r.WatchId == c.WatchId && r.Canceled {
					canceled = r
					return true
				}
			}
			return false
		})
		if canceled == nil {
			res.text += "not canceled by compaction\n"
		} else {
			res.text += fmt.Sprintf("canceled revision=%d compact_revision=%d reason=%q events=%d\n",
				canceled.Header.GetRevision(), canceled.CompactRevision, canceled.CancelReason, len(canceled.Events))
		}
		return res
	}}
}

func cloneHeader(h *pb.ResponseHeader) *pb.ResponseHeader {
	if h == nil {
		return nil
	}
	c := *h
	return &c
}

// cancelWatch cancels watcher w (by creation index) and waits for the
// canceled response. Run it after a sync: etcd drops the events of a
// watcher it has not sent yet when the cancel overtakes them.
func cancelWatch(w int) *diffOp {
	return &diffOp{desc: fmt.Sprintf("CancelWatch watcher:%d", w), run: func(ctx context.Context, tg *diffTarget) diffResult {
		dw := tg.watchers[w]
		s := dw.stream
		isCancel := func(r *pb.WatchResponse) bool { return r.WatchId == dw.id && r.Canceled }
		s.mu.Lock()
		already := countResps(s.mu.resps, isCancel)
		s.mu.Unlock()
		if already > 0 {
			return diffResult{text: "already canceled\n"}
		}
		if err := s.ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: dw.id}}}); err != nil {
			return errResult(err)
		}
		var canceled pb.WatchResponse
		ok, err := s.waitFor(diffOpTimeout, func(resps []*pb.WatchResponse) bool {
			for _, r := range resps {
				if isCancel(r) {
					canceled = *r
					return true
				}
			}
			return false
		})
		if !ok {
			return diffResult{text: fmt.Sprintf("no canceled response (stream error %v)\n", err), err: true}
		}
		canceled.Header = cloneHeader(canceled.Header)
		return respResult(&canceled, nil)
	}}
}

// syncWatches writes diffSyncKey, then waits until each stream in synced
// has delivered every event up to that write: etcd answers a progress
// request (watch_id -1) only once all the stream's watchers are synced, and
// sends it after their events. A stream without live watchers gets no
// answer from etcd, so the generator names only streams that have some.
func syncWatches(synced []int) *diffOp {
	put := kvPut(&pb.PutRequest{Key: []byte(diffSyncKey)})
	return &diffOp{desc: fmt.Sprintf("Sync streams:%v (%s)", synced, put.desc), run: func(ctx context.Context, tg *diffTarget) diffResult {
		res := put.run(ctx, tg)
		if res.err {
			return res
		}
		for _, i := range synced {
			if err := tg.progress(i, res.rev); err != nil {
				return diffResult{text: fmt.Sprintf("sync of stream %d to revision %d: %v\n", i, res.rev, err), err: true}
			}
		}
		return res
	}}
}

// progress waits until stream i sends a progress notification at rev or
// above, resending the request while etcd drops it.
func (tg *diffTarget) progress(i int, rev int64) error {
	s, err := tg.stream(i)
	if err != nil {
		return err
	}
	s.mu.Lock()
	from := len(s.mu.resps)
	s.mu.Unlock()
	deadline := time.Now().Add(diffSyncTimeout)
	for time.Now().Before(deadline) {
		if err := s.ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
			return err
		}
		ok, err := s.waitFor(diffProgressRetry, func(resps []*pb.WatchResponse) bool {
			for _, r := range resps[from:] {
				if r.WatchId == -1 && !r.Created && r.Header.GetRevision() >= rev {
					return true
				}
			}
			return false
		})
		if ok || err != nil {
			return err
		}
	}
	return fmt.Errorf("no progress notification at revision %d within %v", rev, diffSyncTimeout)
}

// drain waits for every stream to deliver what it has: a progress sync of
// the streams that can be synced, a quiet wait for the others.
func (tg *diffTarget) drain(g *diffGen) {
	quiet := false
	for i := range diffNumStreams {
		if tg.streams[i] == nil {
			continue
		}
		if g.syncable(i, g.rev) && g.liveOn(i) > 0 {
			if err := tg.progress(i, g.rev); err != nil {
				tg.t.Fatalf("%s: final sync of stream %d: %v", tg.name, i, err)
			}
		} else {
			quiet = true
		}
	}
	if quiet {
		time.Sleep(diffQuietWait)
	}
}

// watcherLog is everything watcher w received: its created response, its
// events in order (however they were batched into responses) and its
// cancellation. The header revision of an event response is left out: for
// a watcher catching up, etcd reports the store's revision when it sent the
// batch, which depends on timing.
func (tg *diffTarget) watcherLog(w int) diffResult {
	dw := tg.watchers[w]
	s := dw.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.mu.resps {
		if r.WatchId != dw.id || dw.id < 0 {
			continue
		}
		switch {
		case r.Created:
			fmt.Fprintf(&b, "created revision=%d\n", r.Header.GetRevision())
		case r.Canceled:
			fmt.Fprintf(&b, "canceled revision=%d compact_revision=%d reason=%q\n", r.Header.GetRevision(), r.CompactRevision, r.CancelReason)
		}
		for _, ev := range r.Events {
			fmt.Fprintf(&b, "\nevent %s", textOf(ev))
		}
		if r.CompactRevision != 0 && !r.Canceled {
			fmt.Fprintf(&b, "compact_revision=%d without cancel\n", r.CompactRevision)
		}
	}
	if s.mu.err != nil && !errors.Is(s.mu.err, context.Canceled) && s.mu.err != io.EOF {
		fmt.Fprintf(&b, "stream error: %v\n", status.Convert(s.mu.err).Message())
	}
	return diffResult{text: b.String()}
}

// The generator.

type genWatcher struct {
	stream int
	start  int64 // requested start revision; 0: the next one
	live   bool  // created, not canceled by compaction or by the test
	desc   string
}

// diffGen makes the random operations. It tracks the agreed state it needs
// to make interesting requests: the revision, the compaction revision, the
// watchers.
type diffGen struct {
	rng       *rand.Rand
	rev       int64 // current revision
	compacted int64 // compaction revision; 0 before any
	watchers  []genWatcher
	queue     []*diffOp // operations that must come next
	phase     int       // of final
}

func newDiffGen(seed uint64) *diffGen {
	return &diffGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), rev: 1}
}

func (g *diffGen) observe(op *diffOp, r diffResult) {
	if r.rev > g.rev {
		g.rev = r.rev
	}
	if op.gen != nil {
		op.gen(g, r)
	}
}

func (g *diffGen) pick(n int) int { return g.rng.IntN(n) }

func (g *diffGen) chance(pct int) bool { return g.rng.IntN(100) < pct }

func (g *diffGen) key() []byte {
	switch {
	case g.chance(1):
		return nil
	case g.chance(8):
		b := make([]byte, 1+g.pick(3))
		for i := range b {
			b[i] = byte(g.pick(256))
		}
		return b
	}
	return []byte(diffKeys[g.pick(len(diffKeys))])
}

func (g *diffGen) value() []byte {
	if g.chance(5) {
		b := make([]byte, g.pick(16))
		for i := range b {
			b[i] = byte(g.pick(256))
		}
		return b
	}
	return []byte(diffValues[g.pick(len(diffValues))])
}

// rangeEnd: a single key, a prefix, from-key, or an arbitrary end (which
// may sort before key).
func (g *diffGen) rangeEnd(key []byte) []byte {
	switch g.pick(6) {
	case 0, 1:
		return nil
	case 2:
		return []byte(clientv3.GetPrefixRangeEnd(string(key)))
	case 3:
		return []byte{0}
	case 4:
		return append(append([]byte(nil), key...), 0)
	default:
		return g.key()
	}
}

// revision: mostly 0 (current), else anything from below the compaction
// revision to beyond the current one.
func (g *diffGen) revision() int64 {
	if g.chance(60) {
		return 0
	}
	lo := max(1, g.compacted-2)
	return lo + g.rng.Int64N(g.rev+3-lo)
}

func (g *diffGen) leaseID() int64 {
	if g.chance(3) {
		return 999 // never granted
	}
	return diffLeaseIDs[g.pick(len(diffLeaseIDs))]
}

func (g *diffGen) putRequest() *pb.PutRequest {
	r := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.chance(50)}
	if g.chance(15) {
		r.Lease = g.leaseID()
	}
	if g.chance(6) {
		r.IgnoreValue = true
		if !g.chance(10) {
			r.Value = nil
		}
	}
	if g.chance(6) {
		r.IgnoreLease = true
		if !g.chance(10) {
			r.Lease = 0
		}
	}
	return r
}

func (g *diffGen) rangeRequest() *pb.RangeRequest {
	r := &pb.RangeRequest{Key: g.key()}
	r.RangeEnd = g.rangeEnd(r.Key)
	r.Revision = g.revision()
	if g.chance(30) {
		r.Limit = int64(g.pick(4))
	}
	if g.chance(40) {
		r.SortOrder = pb.RangeRequest_SortOrder(g.pick(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.pick(5))
		if g.chance(2) {
			r.SortTarget = 5 // invalid
		}
	}
	r.Serializable = g.chance(30)
	r.KeysOnly = g.chance(15)
	r.CountOnly = g.chance(10)
	if g.chance(15) {
		r.MinModRevision = g.rng.Int64N(g.rev + 1)
	}
	if g.chance(15) {
		r.MaxModRevision = g.rng.Int64N(g.rev + 1)
	}
	if g.chance(15) {
		r.MinCreateRevision = g.rng.Int64N(g.rev + 1)
	}
	if g.chance(15) {
		r.MaxCreateRevision = g.rng.Int64N(g.rev + 1)
	}
	return r
}

func (g *diffGen) deleteRequest() *pb.DeleteRangeRequest {
	r := &pb.DeleteRangeRequest{Key: g.key(), PrevKv: g.chance(50)}
	r.RangeEnd = g.rangeEnd(r.Key)
	return r
}

func (g *diffGen) compare() *pb.Compare {
	c := &pb.Compare{Key: g.key(), Target: pb.Compare_CompareTarget(g.pick(5)), Result: pb.Compare_CompareResult(g.pick(4))}
	if len(c.Key) == 0 && !g.chance(10) {
		c.Key = []byte("a")
	}
	if g.chance(25) {
		c.RangeEnd = g.rangeEnd(c.Key)
	}
	target := c.Target
	if g.chance(3) {
		target = pb.Compare_CompareTarget(g.pick(5)) // a union that does not match the target
	}
	small := int64(g.pick(4))
	switch target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: small}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: g.rng.Int64N(g.rev + 2)}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: g.rng.Int64N(g.rev + 2)}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: []int64{0, g.leaseID()}[g.pick(2)]}
	}
	return c
}

func (g *diffGen) requestOps(depth int) []*pb.RequestOp {
	ops := make([]*pb.RequestOp, g.pick(4))
	for i := range ops {
		switch n := g.pick(10); {
		case n < 4:
			ops[i] = opPut(g.putRequest())
		case n < 6:
			ops[i] = opDelete(g.deleteRequest())
		case n < 9 || depth >= 2:
			ops[i] = opRange(g.rangeRequest())
		default:
			ops[i] = opTxn(g.txnRequest(depth + 1))
		}
	}
	return ops
}

// txnWithoutCrash keeps etcd alive. etcd's duplicate-key check treats a
// delete with range end "\x00" (from key) as an empty interval, so a txn
// may delete a key and then put it again in the same revision, and etcd
// 3.6 does not survive that: an ignore_value or ignore_lease put of the
// deleted key panics the member ("unexpected error during txn with
// writes"; its checks ran against the state before the txn), and a later
// compaction leaves its index pointing at a version it removed ("range
// failed to find revision pair", fatal on the next read of the key).
// MetaStore handles both (TestDifferentialErrors pins its answer to the
// first). In a random txn that puts anything, a from-key delete becomes a
// prefix delete.
func txnWithoutCrash(r *pb.TxnRequest) *pb.TxnRequest {
	var dels []*pb.DeleteRangeRequest
	puts := false
	var walk func(r *pb.TxnRequest)
	walk = func(r *pb.TxnRequest) {
		for _, op := range append(slices.Clone(r.Success), r.Failure...) {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				puts = true
			case *pb.RequestOp_RequestDeleteRange:
				if bytes.Equal(v.RequestDeleteRange.RangeEnd, []byte{0}) {
					dels = append(dels, v.RequestDeleteRange)
				}
			case *pb.RequestOp_RequestTxn:
				walk(v.RequestTxn)
			}
		}
	}
	walk(r)
	if puts {
		for _, d := range dels {
			d.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(string(d.Key)))
			if bytes.Equal(d.RangeEnd, []byte{0}) {
				d.RangeEnd = nil // the key is all 0xff: no prefix end
			}
		}
	}
	return r
}

func (g *diffGen) txnRequest(depth int) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for range g.pick(4) {
		r.Compare = append(r.Compare, g.compare())
	}
	r.Success = g.requestOps(depth)
	r.Failure = g.requestOps(depth)
	if depth == 0 && g.chance(2) {
		n := diffMaxTxnOps + 1
		if g.chance(50) {
			n = diffMaxTxnOps
		}
		for range n - len(r.Success) {
			r.Success = append(r.Success, opRange(&pb.RangeRequest{Key: g.key()}))
		}
	}
	return r
}

// syncable reports whether a progress request on stream i can be answered
// once the store is at rev: every live watcher on it starts at or below rev.
func (g *diffGen) syncable(i int, rev int64) bool {
	for _, w := range g.watchers {
		if w.live && w.stream == i && w.start > rev {
			return false
		}
	}
	return true
}

func (g *diffGen) liveOn(i int) int {
	n := 0
	for _, w := range g.watchers {
		if w.live && w.stream == i {
			n++
		}
	}
	return n
}

// sync makes the operation that syncs every stream it can.
func (g *diffGen) sync() *diffOp {
	var streams []int
	for i := range diffNumStreams {
		if g.liveOn(i) > 0 && g.syncable(i, g.rev+1) {
			streams = append(streams, i)
		}
	}
	return syncWatches(streams)
}

func (g *diffGen) watchRequest() (int, *pb.WatchCreateRequest) {
	r := &pb.WatchCreateRequest{Key: g.key(), PrevKv: g.chance(50), Fragment: g.chance(10)}
	r.RangeEnd = g.rangeEnd(r.Key)
	stream := diffStreamNow
	switch n := g.pick(100); {
	case n < 40:
	case n < 85:
		lo := max(1, g.compacted-3)
		r.StartRevision = lo + g.rng.Int64N(g.rev+2-lo)
		if r.StartRevision < g.compacted {
			stream = diffStreamCompacted
		}
	case n < 95:
		r.StartRevision = g.rev + 2 + g.rng.Int64N(5)
		stream = diffStreamFuture
	default:
		r.StartRevision = -1 - g.rng.Int64N(3)
	}
	if g.chance(20) {
		r.Filters = append(r.Filters, pb.WatchCreateRequest_NOPUT)
	}
	if g.chance(20) {
		r.Filters = append(r.Filters, pb.WatchCreateRequest_NODELETE)
	}
	return stream, r
}

func (g *diffGen) watchOp(stream int, r *pb.WatchCreateRequest) *diffOp {
	op := createWatch(stream, r)
	start := r.StartRevision
	op.gen = func(g *diffGen, res diffResult) {
		// A watcher starting below the compaction revision is canceled
		// right after it is created; one with a negative start revision
		// or an empty range is refused.
		live := !res.err && !res.refused && (start == 0 || start >= g.compacted)
		g.watchers = append(g.watchers, genWatcher{stream: stream, start: start, live: live, desc: op.desc})
	}
	return op
}

// next returns the next random operation.
func (g *diffGen) next() *diffOp {
	if len(g.queue) > 0 {
		op := g.queue[0]
		g.queue = g.queue[1:]
		return op
	}
	switch n := g.pick(1000); {
	case n < 250:
		return kvPut(g.putRequest())
	case n < 450:
		return kvRange(g.rangeRequest())
	case n < 530:
		return kvDelete(g.deleteRequest())
	case n < 720:
		return kvTxn(txnWithoutCrash(g.txnRequest(0)))
	case n < 740:
		return g.compact(g.compactRevision(), g.chance(50))
	case n < 780:
		return leaseGrant(&pb.LeaseGrantRequest{ID: g.leaseID(), TTL: diffLeaseTTLs[g.pick(len(diffLeaseTTLs))]})
	case n < 800:
		return leaseRevoke(g.leaseID())
	case n < 830:
		return leaseTimeToLive(g.leaseID(), g.chance(70))
	case n < 840:
		return leaseLeases()
	case n < 850:
		return leaseKeepAlive(g.leaseID())
	case n < 950:
		return g.watchOp(g.watchRequest())
	case n < 965:
		return g.cancel()
	default:
		return g.sync()
	}
}

// compactRevision: mostly between the compaction revision and the
// current one, sometimes at or below the compaction revision or beyond
// the current one.
func (g *diffGen) compactRevision() int64 {
	lo := max(0, g.compacted-1)
	return lo + g.rng.Int64N(g.rev+3-lo)
}

// compact syncs the watch streams first: etcd reads a watch event's
// prev_kv when it sends the event, so a compaction overtaking a watcher
// would drop it (at random).
func (g *diffGen) compact(rev int64, physical bool) *diffOp {
	op := kvCompact(&pb.CompactionRequest{Revision: rev, Physical: physical})
	op.gen = func(g *diffGen, r diffResult) {
		if !r.err {
			g.compacted = max(g.compacted, rev)
		}
	}
	if g.liveOn(diffStreamNow)+g.liveOn(diffStreamFuture) == 0 {
		return op
	}
	g.queue = append(g.queue, op)
	return g.sync()
}

// cancel syncs the streams, then cancels a live watcher of diffStreamNow.
func (g *diffGen) cancel() *diffOp {
	var live []int
	for i, w := range g.watchers {
		if w.live && w.stream == diffStreamNow {
			live = append(live, i)
		}
	}
	if len(live) == 0 {
		return g.watchOp(g.watchRequest())
	}
	w := live[g.pick(len(live))]
	sync := g.sync()
	g.watchers[w].live = false
	g.queue = append(g.queue, cancelWatch(w))
	return sync
}

// final returns the operations that end every run, one at a time (each
// depends on the state the previous ones left), then nil: a compaction if
// none happened, a watcher below the compaction revision, a last sync.
func (g *diffGen) final() *diffOp {
	if len(g.queue) > 0 {
		return g.next()
	}
	g.phase++
	switch g.phase {
	case 1:
		if g.compacted < 2 && g.rev > 4 {
			return g.compact(g.rev-2, true)
		}
		return g.final()
	case 2:
		if g.compacted < 2 {
			return g.final()
		}
		return g.watchOp(diffStreamCompacted, &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: g.compacted - 1, PrevKv: true})
	case 3:
		return g.sync()
	}
	return nil
}

// lineDiff is a line-based diff of a and b: " " common, "-" only in a,
// "+" only in b.
func lineDiff(a, b string) string {
	x, y := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	if len(x)*len(y) > 4_000_000 {
		return "-" + strings.Join(x, "-") + "\n+" + strings.Join(y, "+")
	}
	// lcs[i][j]: length of the longest common subsequence of x[i:], y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	line := func(prefix, s string) {
		out.WriteString(prefix)
		out.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			out.WriteString("\n")
		}
	}
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		switch {
		case x[i] == y[j]:
			line("  ", x[i])
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			line("- ", x[i])
			i++
		default:
			line("+ ", y[j])
			j++
		}
	}
	for ; i < len(x); i++ {
		line("- ", x[i])
	}
	for ; j < len(y); j++ {
		line("+ ", y[j])
	}
	return out.String()
}
