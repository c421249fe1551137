package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The replication tests run real 3-member clusters and check what raft
// replication promises under crashes, restarts, membership changes and
// partitions. Partitions go through the transport's fault layer, reached
// over the test-only --experimental-peer-faults hook on each peer listener.
// Every test ends by comparing HashKV of all live members at one revision.

// faultArgs enable the fault hook; every replication test runs with it.
var faultArgs = []string{"--experimental-peer-faults"}

// Bounds of the polls below. They are generous because two cores run three
// or four members, the test binary and the Go race-free processes at once.
const (
	convergeTimeout = 45 * time.Second
	electionTimeout = 20 * time.Second
	rpcTimeout      = 5 * time.Second
)

// rtest is one replication test's cluster with a client per member, kept
// for the whole test (the polls below would otherwise dial per attempt).
type rtest struct {
	t    *testing.T
	c    *testCluster
	mu   sync.Mutex
	clis map[*member]*clientv3.Client
	ids  map[*member]uint64
}

func newRTest(t *testing.T, n int, extraArgs ...string) *rtest {
	c := newCluster(t, n, append(append([]string(nil), faultArgs...), extraArgs...)...)
	r := &rtest{t: t, c: c, clis: map[*member]*clientv3.Client{}, ids: map[*member]uint64{}}
	for _, m := range c.members {
		r.id(m)
	}
	return r
}

func (m *member) alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (r *rtest) cli(m *member) *clientv3.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clis[m]; c != nil {
		return c
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: rpcTimeout, Logger: zap.NewNop()})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	r.clis[m] = c
	return c
}

// clientOf returns a new client balancing over ms.
func (r *rtest) clientOf(ms ...*member) *clientv3.Client {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.clientURL)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: rpcTimeout, Logger: zap.NewNop()})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// id returns m's member ID (asked once, while m runs).
func (r *rtest) id(m *member) uint64 {
	r.mu.Lock()
	id, ok := r.ids[m]
	r.mu.Unlock()
	if ok {
		return id
	}
	var st *clientv3.StatusResponse
	poll(r.t, convergeTimeout, m.name+" answers Status", func() (err error) {
		st, err = r.status(m)
		return err
	})
	r.mu.Lock()
	r.ids[m] = st.Header.MemberId
	r.mu.Unlock()
	return st.Header.MemberId
}

func (r *rtest) status(m *member) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return r.cli(m).Status(ctx, m.clientURL)
}

// live returns the members whose process runs.
func (r *rtest) live() []*member {
	var out []*member
	for _, m := range r.c.members {
		if m.alive() {
			out = append(out, m)
		}
	}
	return out
}

func without(ms []*member, drop ...*member) []*member {
	var out []*member
next:
	for _, m := range ms {
		for _, d := range drop {
			if m == d {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// poll calls f until it returns nil, failing the test with f's last error
// after timeout.
func poll(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agreedLeader waits until every member of ms reports the same leader, one
// of ms, and exactly that member reports itself leader. It returns it.
func (r *rtest) agreedLeader(ms []*member) *member {
	r.t.Helper()
	var lead *member
	poll(r.t, electionTimeout, "members agree on one leader", func() error {
		var leaders []uint64
		var self []*member
		for _, m := range ms {
			st, err := r.status(m)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			leaders = append(leaders, st.Leader)
			if st.Leader == st.Header.MemberId {
				self = append(self, m)
			}
		}
		for _, l := range leaders {
			if l == 0 || l != leaders[0] {
				return fmt.Errorf("leaders reported: %x", leaders)
			}
		}
		if len(self) != 1 || r.id(self[0]) != leaders[0] {
			return fmt.Errorf("leader %x, but %d members claim to lead", leaders[0], len(self))
		}
		lead = self[0]
		return nil
	})
	return lead
}

// revision returns m's current revision, read locally.
func (r *rtest) revision(m *member) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	g, err := r.cli(m).Get(ctx, "\x00", clientv3.WithSerializable(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return g.Header.Revision, nil
}

// checkConverged waits until every member of ms has reached the same
// revision, then requires equal HashKV at that revision everywhere. It
// returns the revision.
func (r *rtest) checkConverged(ms []*member) int64 {
	r.t.Helper()
	var rev int64
	poll(r.t, convergeTimeout, "members reach one revision", func() error {
		revs := map[string]int64{}
		var lo, hi int64 = -1, -1
		for _, m := range ms {
			v, err := r.revision(m)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			revs[m.name] = v
			if lo < 0 || v < lo {
				lo = v
			}
			hi = max(hi, v)
		}
		if lo != hi {
			return fmt.Errorf("revisions %v", revs)
		}
		rev = hi
		return nil
	})
	var first *clientv3.HashKVResponse
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		h, err := r.cli(m).HashKV(ctx, m.clientURL, rev)
		cancel()
		if err != nil {
			r.t.Fatalf("HashKV(%d) on %s: %v", rev, m.name, err)
		}
		if first == nil {
			first = h
			continue
		}
		if h.Hash != first.Hash || h.CompactRevision != first.CompactRevision {
			r.t.Fatalf("HashKV at revision %d: %s has %d (compacted %d), %s has %d (compacted %d)",
				rev, ms[0].name, first.Hash, first.CompactRevision, m.name, h.Hash, h.CompactRevision)
		}
	}
	return rev
}

// faults posts one fault operation to m's hook, e.g. "op=heal".
func (r *rtest) faults(m *member, query string) {
	r.t.Helper()
	resp, err := http.Post(m.peerURL+"/debug/faults?"+query, "", nil)
	if err != nil {
		r.t.Fatalf("fault %s on %s: %v", query, m.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		r.t.Fatalf("fault %s on %s: %s", query, m.name, resp.Status)
	}
}

// peerStats are the counters GET /debug/faults reports per peer.
type peerStats struct {
	Active            bool   `json:"active"`
	SnapshotsSent     uint64 `json:"snapshotsSent"`
	SnapshotsReceived uint64 `json:"snapshotsReceived"`
	MsgsFaultDropped  uint64 `json:"msgsFaultDropped"`
}

// faultsStatus is what GET /debug/faults answers.
type faultsStatus struct {
	RaftLogFirstIndex uint64               `json:"raftLogFirstIndex"`
	Peers             map[string]peerStats `json:"peers"`
}

func (r *rtest) faultsStatus(m *member) faultsStatus {
	r.t.Helper()
	resp, err := http.Get(m.peerURL + "/debug/faults")
	if err != nil {
		r.t.Fatalf("GET /debug/faults of %s: %v", m.name, err)
	}
	defer resp.Body.Close()
	var st faultsStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		r.t.Fatalf("GET /debug/faults of %s: %v", m.name, err)
	}
	return st
}

// stats returns m's transport counters for peer.
func (r *rtest) stats(m, peer *member) peerStats {
	r.t.Helper()
	return r.faultsStatus(m).Peers[fmt.Sprintf("%x", r.id(peer))]
}

// markCommit writes one key through ms and returns the leader's commit
// index after it: once ms no longer reach a member, no entry that member
// holds is above it.
func (r *rtest) markCommit(ms []*member) uint64 {
	r.t.Helper()
	r.putN(ms, "mark", 1, 1)
	st, err := r.status(r.agreedLeader(ms))
	if err != nil {
		r.t.Fatal(err)
	}
	return st.RaftIndex
}

// waitTruncatedPast waits until lead's raft log starts above index+1: a
// member whose log ends at index can then only catch up by snapshot. The
// writes that get it there must already be done (the server truncates
// on its own schedule).
func (r *rtest) waitTruncatedPast(lead *member, index uint64) {
	r.t.Helper()
	poll(r.t, convergeTimeout, lead.name+" truncates its log", func() error {
		if first := r.faultsStatus(lead).RaftLogFirstIndex; first <= index+1 {
			return fmt.Errorf("log starts at %d, want past %d", first, index+1)
		}
		return nil
	})
}

// putN writes n keys prefix/000000... with `workers` concurrent clients
// over ms, failing on any error.
func (r *rtest) putN(ms []*member, prefix string, n, workers int) {
	r.t.Helper()
	cli := r.clientOf(ms...)
	var next atomic.Int64
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					errc <- nil
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, err := cli.Put(ctx, fmt.Sprintf("%s/%06d", prefix, i), fmt.Sprint("v", i))
				cancel()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errc; err != nil {
			r.t.Fatalf("writing %s: %v", prefix, err)
		}
	}
}

// count returns how many keys under prefix m holds, read locally.
func (r *rtest) count(m *member, prefix string) int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	g, err := r.cli(m).Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
	if err != nil {
		r.t.Fatalf("count %s on %s: %v", prefix, m.name, err)
	}
	return g.Count
}

// writers are concurrent clients writing unique keys, each recording the
// writes acknowledged to it and checking that the revisions it observes
// never go backwards: every acknowledged put has a higher revision than
// the one before, and a linearizable read after it sees it.
type writers struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked map[string]string
	errs  []string
	n     atomic.Int64
}

func (r *rtest) startWriters(prefix string, clients int, ms []*member) *writers {
	w := &writers{stopc: make(chan struct{}), acked: map[string]string{}}
	for g := 0; g < clients; g++ {
		cli := r.clientOf(ms...)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var lastRev int64
			for i := 0; ; i++ {
				select {
				case <-w.stopc:
					return
				default:
				}
				k, v := fmt.Sprintf("%s/%d/%06d", prefix, g, i), fmt.Sprintf("%d.%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				resp, err := cli.Put(ctx, k, v)
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // an election or a dead endpoint
					continue
				}
				w.mu.Lock()
				if rev := resp.Header.Revision; rev <= lastRev {
					w.errs = append(w.errs, fmt.Sprintf("client %d: put %s acknowledged at revision %d after %d", g, k, rev, lastRev))
				}
				lastRev = resp.Header.Revision
				w.acked[k] = v
				w.mu.Unlock()
				w.n.Add(1)
				if i%8 != 0 {
					continue
				}
				ctx, cancel = context.WithTimeout(context.Background(), rpcTimeout)
				g2, err := cli.Get(ctx, k)
				cancel()
				if err != nil {
					continue
				}
				w.mu.Lock()
				if len(g2.Kvs) != 1 || string(g2.Kvs[0].Value) != v {
					w.errs = append(w.errs, fmt.Sprintf("client %d: linearizable get %s after its put: %v", g, k, g2.Kvs))
				}
				if g2.Header.Revision < lastRev {
					w.errs = append(w.errs, fmt.Sprintf("client %d: get at revision %d after a put at %d", g, g2.Header.Revision, lastRev))
				}
				lastRev = g2.Header.Revision
				w.mu.Unlock()
			}
		}()
	}
	return w
}

// waitAcked waits until the writers have n acknowledged writes in all.
func (w *writers) waitAcked(t *testing.T, n int64, what string) {
	t.Helper()
	poll(t, convergeTimeout, what, func() error {
		if got := w.n.Load(); got < n {
			return fmt.Errorf("%d acknowledged writes, want %d", got, n)
		}
		return nil
	})
}

// stop stops the writers and fails the test on any ordering violation.
func (w *writers) stop(t *testing.T) map[string]string {
	t.Helper()
	close(w.stopc)
	w.wg.Wait()
	if len(w.errs) > 0 {
		t.Fatalf("%d revision order violations, first: %s", len(w.errs), w.errs[0])
	}
	return w.acked
}

// checkAcked requires every acknowledged write on every member of ms.
func (r *rtest) checkAcked(ms []*member, prefix string, acked map[string]string) {
	r.t.Helper()
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		g, err := r.cli(m).Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithSerializable())
		cancel()
		if err != nil {
			r.t.Fatalf("%s: %v", m.name, err)
		}
		have := make(map[string]string, len(g.Kvs))
		for _, kv := range g.Kvs {
			have[string(kv.Key)] = string(kv.Value)
		}
		var missing []string
		for k, v := range acked {
			if have[k] != v {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			r.t.Fatalf("%s lacks %d of %d acknowledged writes, e.g. %q", m.name, len(missing), len(acked), missing[0])
		}
	}
}

// TestReplicationElection: three members elect exactly one leader and
// every member names it.
func TestReplicationElection(t *testing.T) {
	r := newRTest(t, 3)
	lead := r.agreedLeader(r.c.members)
	st, err := r.status(lead)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.c.members {
		o, err := r.status(m)
		if err != nil {
			t.Fatal(err)
		}
		if o.RaftTerm != st.RaftTerm {
			t.Errorf("%s is in term %d, the leader %s in %d", m.name, o.RaftTerm, lead.name, st.RaftTerm)
		}
	}
	r.putN(r.c.members, "e", 20, 2)
	r.checkConverged(r.c.members)
}

// TestReplicationLeaderKill: SIGKILL the leader under concurrent writers; a
// new leader is elected, the writers go on, and afterwards every
// acknowledged write is on every member (the killed one restarted) and no
// client saw a revision go backwards.
func TestReplicationLeaderKill(t *testing.T) {
	r := newRTest(t, 3)
	w := r.startWriters("lk", 4, r.c.members)
	w.waitAcked(t, 150, "writes before the kill")
	old := r.agreedLeader(r.c.members)
	old.kill(syscall.SIGKILL)
	before := w.n.Load()
	rest := without(r.c.members, old)
	if lead := r.agreedLeader(rest); lead == old {
		t.Fatalf("the killed member still leads")
	}
	w.waitAcked(t, before+150, "writes under the new leader")
	acked := w.stop(t)

	old.start()
	old.waitReady()
	r.checkConverged(r.c.members)
	r.checkAcked(r.c.members, "lk", acked)
	t.Logf("%d acknowledged writes survived the leader's SIGKILL", len(acked))
}

// TestReplicationFollowerCatchUpLog: a follower killed with SIGKILL misses
// writes and catches up from the leader's log (no snapshot) on restart.
func TestReplicationFollowerCatchUpLog(t *testing.T) {
	r := newRTest(t, 3)
	lead := r.agreedLeader(r.c.members)
	f := without(r.c.members, lead)[0]
	r.putN(r.c.members, "a", 50, 4)
	f.kill(syscall.SIGKILL)
	r.putN(without(r.c.members, f), "b", 300, 8)
	f.start()
	f.waitReady()
	r.checkConverged(r.c.members)
	if n := r.count(f, "b/"); n != 300 {
		t.Fatalf("%s has %d of 300 keys written while it was down", f.name, n)
	}
	lead = r.agreedLeader(r.c.members)
	if st := r.stats(f, lead); st.SnapshotsReceived != 0 {
		t.Fatalf("%s received %d snapshots; the log should have sufficed", f.name, st.SnapshotsReceived)
	}
}

// TestReplicationFollowerCatchUpSnapshot: with a tiny log (--snapshot-count
// 100, 10 catch-up entries) a follower that was down while thousands of
// keys were written must be sent a snapshot; it installs it, converges to
// the leader's HashKV, and keeps its state across a later SIGKILL.
func TestReplicationFollowerCatchUpSnapshot(t *testing.T) {
	r := newRTest(t, 3, "--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "10")
	lead := r.agreedLeader(r.c.members)
	f := without(r.c.members, lead)[0]
	r.putN(r.c.members, "a", 50, 4)
	f.kill(syscall.SIGTERM)
	mark := r.markCommit(without(r.c.members, f))
	const n = 2000
	r.putN(without(r.c.members, f), "b", n, 16)
	r.waitTruncatedPast(lead, mark)
	f.start()
	f.waitReady()
	r.checkConverged(r.c.members)
	lead = r.agreedLeader(r.c.members)
	if st := r.stats(f, lead); st.SnapshotsReceived == 0 {
		t.Fatalf("%s caught up without a snapshot from %s: %+v", f.name, lead.name, st)
	}
	if st := r.stats(lead, f); st.SnapshotsSent == 0 {
		t.Fatalf("%s reports no snapshot sent to %s: %+v", lead.name, f.name, st)
	}
	if got := r.count(f, "b/"); got != n {
		t.Fatalf("%s has %d of %d keys after the snapshot", f.name, got, n)
	}

	// The installed state, and the log after it, survive a crash.
	r.putN(r.c.members, "c", 100, 8)
	r.checkConverged(r.c.members)
	f.kill(syscall.SIGKILL)
	f.start()
	f.waitReady()
	r.putN(r.c.members, "d", 100, 8)
	r.checkConverged(r.c.members)
	if got := r.count(f, ""); got != 1+50+n+200 {
		t.Fatalf("%s has %d keys after a restart, want %d", f.name, got, 1+50+n+200)
	}
}

// newJoiner prepares (does not start) a process that joins the cluster as
// name, with the cluster's flags and --initial-cluster-state existing.
func (r *rtest) newJoiner(name string, current []*member) *member {
	ports := freePorts(r.t, 2)
	m := &member{
		t:         r.t,
		name:      name,
		dataDir:   filepath.Join(r.t.TempDir(), name),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		extraArgs: r.c.members[0].extraArgs,
		clusterSt: "existing",
	}
	var initial []string
	for _, o := range current {
		initial = append(initial, o.name+"="+o.peerURL)
	}
	m.initialCl = strings.Join(append(initial, m.name+"="+m.peerURL), ",")
	return m
}

// TestReplicationMembership: under writes, add a member that catches up,
// remove a member whose process then stops serving, and add a learner that
// catches up and is promoted.
func TestReplicationMembership(t *testing.T) {
	r := newRTest(t, 3)
	r.putN(r.c.members, "pre", 200, 8)
	w := r.startWriters("mb", 2, r.c.members)
	cli := r.clientOf(r.c.members...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Add m4 while the writers run.
	w.waitAcked(t, 50, "writes before MemberAdd")
	m4 := r.newJoiner("m4", r.c.members)
	add, err := cli.MemberAdd(ctx, []string{m4.peerURL})
	if err != nil {
		t.Fatal(err)
	}
	r.c.members = append(r.c.members, m4)
	m4.start()
	m4.waitReady()
	if got := r.id(m4); got != add.Member.ID {
		t.Fatalf("m4 runs as %x, MemberAdd assigned %x", got, add.Member.ID)
	}
	w.waitAcked(t, w.n.Load()+50, "writes after MemberAdd")

	// Remove a follower while the writers run; its process stops. Ask
	// the leader: a member asked to remove itself may never learn that its
	// removal committed, and then answers with a timeout.
	lead := r.agreedLeader(r.live())
	gone := without(r.c.members, lead, m4)[0]
	if _, err := r.cli(lead).MemberRemove(ctx, r.id(gone)); err != nil {
		t.Fatal(err)
	}
	// It may never apply its own removal (that commits without it): its
	// peers tell it, and it exits, as etcd's removed members do.
	poll(t, convergeTimeout, gone.name+" exits after its removal", func() error {
		if gone.alive() {
			return errors.New("still running")
		}
		return nil
	})
	w.waitAcked(t, w.n.Load()+50, "writes after MemberRemove")
	acked := w.stop(t)
	live := without(r.c.members, gone)
	r.checkConverged(live)
	r.checkAcked(live, "mb", acked)

	// A learner catches up and is promoted.
	cli = r.clientOf(live...)
	m5 := r.newJoiner("m5", live)
	la, err := cli.MemberAddAsLearner(ctx, []string{m5.peerURL})
	if err != nil {
		t.Fatal(err)
	}
	if !la.Member.IsLearner {
		t.Fatalf("MemberAddAsLearner: %+v", la.Member)
	}
	r.c.members = append(r.c.members, m5)
	m5.start()
	want := r.count(lead, "pre/")
	poll(t, convergeTimeout, "the learner catches up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		g, err := r.cli(m5).Get(ctx, "pre/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if g.Count != want {
			return fmt.Errorf("%d of %d keys", g.Count, want)
		}
		return nil
	})
	poll(t, convergeTimeout, "promote the learner", func() error {
		_, err := cli.MemberPromote(ctx, la.Member.ID)
		if errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
			return err
		}
		if err != nil {
			t.Fatalf("MemberPromote: %v", err)
		}
		return nil
	})
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 4 {
		t.Fatalf("member list after add, remove, add: %v", ml.Members)
	}
	for _, m := range ml.Members {
		if m.IsLearner {
			t.Fatalf("member %x is still a learner after promotion", m.ID)
		}
		if m.ID == r.id(gone) {
			t.Fatalf("removed member %x still listed", m.ID)
		}
	}
	live = r.live()
	if len(live) != 4 {
		t.Fatalf("%d live members, want 4", len(live))
	}
	r.agreedLeader(live)
	r.putN(live, "post", 50, 4)
	r.checkConverged(live)
}

// TestReplicationPartition: cut the leader off from both followers in both
// directions. The majority elects a new leader and takes writes; the old
// leader refuses linearizable reads and writes but serves serializable
// reads of its stale state; after Heal it follows the new leader and
// converges.
func TestReplicationPartition(t *testing.T) {
	r := newRTest(t, 3)
	r.putN(r.c.members, "a", 100, 4)
	old := r.agreedLeader(r.c.members)
	rest := without(r.c.members, old)
	for _, f := range rest {
		r.faults(old, fmt.Sprintf("op=blackhole&peer=%x", r.id(f)))
		r.faults(old, fmt.Sprintf("op=blackhole-from&peer=%x", r.id(f)))
		r.faults(f, fmt.Sprintf("op=blackhole&peer=%x", r.id(old)))
		r.faults(f, fmt.Sprintf("op=blackhole-from&peer=%x", r.id(old)))
	}
	lead := r.agreedLeader(rest)
	r.putN(rest, "b", 100, 4)

	oc := r.cli(old)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := oc.Put(ctx, "minority", "v")
	cancel()
	if err == nil {
		t.Fatalf("the partitioned old leader acknowledged a write")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	_, err = oc.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err == nil {
		t.Fatalf("the partitioned old leader served a linearizable read")
	}
	if n := r.count(old, "a/"); n != 100 {
		t.Fatalf("serializable read on the old leader: %d keys, want 100", n)
	}
	if n := r.count(old, "b/"); n != 0 {
		t.Fatalf("the partitioned old leader has %d of the majority's keys", n)
	}
	if st := r.stats(old, lead); st.MsgsFaultDropped == 0 {
		t.Fatalf("no message to %s was dropped by the fault layer: %+v", lead.name, st)
	}

	for _, m := range r.c.members {
		r.faults(m, "op=heal")
	}
	// The old leader's log lacks the majority's term: it can only follow.
	poll(t, electionTimeout, old.name+" follows "+lead.name, func() error {
		st, err := r.status(old)
		if err != nil {
			return err
		}
		if st.Leader != r.id(lead) {
			return fmt.Errorf("%s names leader %x", old.name, st.Leader)
		}
		return nil
	})
	r.checkConverged(r.c.members)
	if n := r.count(old, "b/"); n != 100 {
		t.Fatalf("the old leader has %d of 100 keys written during the partition", n)
	}
	if n := r.count(old, "minority"); n != 0 {
		t.Fatalf("the write refused during the partition was applied after Heal")
	}
}

// TestReplicationFaultsHookOff: without --experimental-peer-faults the hook
// does not exist.
func TestReplicationFaultsHookOff(t *testing.T) {
	c := newCluster(t, 1)
	resp, err := http.Post(c.members[0].peerURL+"/debug/faults?op=heal", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /debug/faults without the flag: %s", resp.Status)
	}
}

// partition cuts m off from every other member of the cluster, both ways.
func (r *rtest) partition(m *member) {
	r.t.Helper()
	for _, o := range without(r.c.members, m) {
		if !o.alive() {
			continue
		}
		r.faults(m, fmt.Sprintf("op=blackhole&peer=%x", r.id(o)))
		r.faults(m, fmt.Sprintf("op=blackhole-from&peer=%x", r.id(o)))
		r.faults(o, fmt.Sprintf("op=blackhole&peer=%x", r.id(m)))
		r.faults(o, fmt.Sprintf("op=blackhole-from&peer=%x", r.id(m)))
	}
}

// TestReplicationSnapshotWatchAndJoin: with a tiny log, a follower
// partitioned while the majority writes past its log is healed by a
// snapshot installed under a watcher: the watcher on that follower still
// gets every event, in order, once. Then a member added after the log was
// truncated joins by snapshot.
func TestReplicationSnapshotWatchAndJoin(t *testing.T) {
	r := newRTest(t, 3, "--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "10")
	lead := r.agreedLeader(r.c.members)
	f := without(r.c.members, lead)[0]
	r.putN(r.c.members, "a", 50, 4)
	r.checkConverged(r.c.members)
	start, err := r.revision(f)
	if err != nil {
		t.Fatal(err)
	}

	r.partition(f)
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wch := r.cli(f).Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(start+1))
	mark := r.markCommit(without(r.c.members, f))
	const n = 1000
	r.putN(without(r.c.members, f), "w", n, 16)
	r.waitTruncatedPast(lead, mark)
	for _, m := range r.c.members {
		r.faults(m, "op=heal")
	}
	r.checkConverged(r.c.members)
	lead = r.agreedLeader(r.c.members)
	if st := r.stats(f, lead); st.SnapshotsReceived == 0 {
		t.Fatalf("%s caught up without a snapshot: %+v", f.name, st)
	}

	seen := map[string]bool{}
	lastRev := start
	timeout := time.After(convergeTimeout)
	for len(seen) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch on %s closed after %d of %d events", f.name, len(seen), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch on %s after %d of %d events: %v (canceled %v, compact revision %d)",
					f.name, len(seen), n, err, wr.Canceled, wr.CompactRevision)
			}
			for _, ev := range wr.Events {
				k := string(ev.Kv.Key)
				if ev.Kv.ModRevision <= lastRev {
					t.Fatalf("watch event %s at revision %d after revision %d", k, ev.Kv.ModRevision, lastRev)
				}
				if seen[k] {
					t.Fatalf("watch event for %s twice", k)
				}
				lastRev = ev.Kv.ModRevision
				seen[k] = true
			}
		case <-timeout:
			t.Fatalf("watch on %s delivered %d of %d events", f.name, len(seen), n)
		}
	}

	// A member added now joins by snapshot: the log it would need is gone.
	r.waitTruncatedPast(lead, 1)
	m4 := r.newJoiner("m4", r.c.members)
	cli := r.clientOf(r.c.members...)
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	_, err = cli.MemberAdd(ctx, []string{m4.peerURL})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	r.c.members = append(r.c.members, m4)
	m4.start()
	m4.waitReady()
	r.putN(r.c.members, "b", 100, 8)
	r.checkConverged(r.c.members)
	lead = r.agreedLeader(r.c.members)
	if st := r.stats(m4, lead); st.SnapshotsReceived == 0 {
		t.Fatalf("m4 joined without a snapshot: %+v", st)
	}
	if got := r.count(m4, "w/"); got != n {
		t.Fatalf("m4 has %d of %d keys", got, n)
	}
}
