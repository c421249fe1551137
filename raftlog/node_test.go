package raftlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

func TestSingleMemberProposeApply(t *testing.T) {
	c := newCluster(t, 1, testConfig())
	m := c.waitLeader()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.put(1, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
		}()
	}
	wg.Wait()
	if got := len(m.app.state()); got != n {
		t.Fatalf("applied %d keys, want %d", got, n)
	}
	mt := m.node.Metrics()
	t.Logf("metrics: %+v", mt)
	if mt.ProposalBatches >= mt.Proposals {
		t.Errorf("%d proposals took %d MsgProps: no batching", mt.Proposals, mt.ProposalBatches)
	}
	if mt.SyncedWrites >= mt.Proposals {
		t.Errorf("%d proposals took %d fsyncs: no group commit", mt.Proposals, mt.SyncedWrites)
	}
	// The applied index reached the engine with the state.
	applied := m.app.AppliedIndex()
	c.stop(1)
	db := openTestEngine(t, m.dir)
	defer db.Close()
	if a := newKVApplier(t, db); a.AppliedIndex() != applied || len(a.state()) != n {
		t.Fatalf("reopened: applied %d with %d keys, want %d with %d", a.AppliedIndex(), len(a.state()), applied, n)
	}
}

func TestThreeMembersReplicate(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	c.waitLeader()
	const n, writers = 1000, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := uint64(w%3 + 1) // followers forward to the leader
			for i := w; i < n; i += writers {
				c.put(via, fmt.Sprintf("k%04d", i), fmt.Sprint(i))
			}
		}()
	}
	wg.Wait()
	state := c.waitConverged(1, 2, 3)
	if len(state) != n {
		t.Fatalf("converged on %d keys, want %d", len(state), n)
	}
	for i := range n {
		if v := state[fmt.Sprintf("k%04d", i)]; v != fmt.Sprint(i) {
			t.Fatalf("k%04d = %q, want %d", i, v, i)
		}
	}
}

func TestLeaderIsolation(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	old := c.waitLeader()
	c.put(old.id, "before", "1")
	c.nw.isolate(old.id)

	// The isolated leader still accepts the proposal into its log, but it
	// can never commit.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := old.node.Propose(ctx, []byte("lost=1"))
	cancel()
	if err != nil && !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Propose on the isolated leader: %v", err)
	}
	// Its linearizable reads must not succeed.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	_, err = old.node.ReadIndex(ctx)
	cancel()
	if err == nil {
		t.Fatal("ReadIndex on an isolated leader succeeded")
	}
	t.Logf("minority ReadIndex: %v", err)

	var others []uint64
	for _, id := range running(c) {
		if id != old.id {
			others = append(others, id)
		}
	}
	nl := c.waitLeader(others...)
	if nl.id == old.id {
		t.Fatal("isolated member still leads the majority")
	}
	c.put(nl.id, "after", "1")
	// The old leader has stepped down (check-quorum) and refuses new
	// proposals, or they too never commit.
	c.eventually(5*time.Second, "the old leader to step down", func() bool { return !old.node.IsLeader() })

	c.nw.heal()
	state := c.waitConverged(1, 2, 3)
	if _, ok := state["lost"]; ok {
		t.Fatal("a proposal of the isolated leader committed")
	}
	if state["before"] != "1" || state["after"] != "1" {
		t.Fatalf("state %v lacks committed writes", state)
	}
}

func TestRestartCatchesUp(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	l := c.waitLeader()
	c.put(l.id, "a", "1")
	c.waitConverged(1, 2, 3)
	victim := l.id%3 + 1 // a follower
	dir := c.members[victim].dir
	appliedBefore := c.members[victim].app.AppliedIndex()
	c.stop(victim)
	for i := range 50 {
		c.put(l.id, fmt.Sprintf("b%d", i), "2")
	}
	m := c.start(victim, dir, nil)
	if got := m.app.AppliedIndex(); got != appliedBefore {
		t.Fatalf("restarted applier at %d, want the persisted %d", got, appliedBefore)
	}
	state := c.waitConverged(1, 2, 3)
	if len(state) != 51 {
		t.Fatalf("converged on %d keys, want 51", len(state))
	}
	if m.node.Term() == 0 {
		t.Fatal("restarted member lost its term")
	}
}

func TestSnapshotCatchUp(t *testing.T) {
	const catchUpEntries = 10
	c := newCluster(t, 3, testConfig())
	l := c.waitLeader()
	c.put(l.id, "a", "1")
	c.waitConverged(1, 2, 3)
	victim := l.id%3 + 1 // a follower
	dir := c.members[victim].dir
	c.stop(victim)
	victimLast := func() uint64 {
		db := openTestEngine(t, dir)
		defer db.Close()
		st, err := Open(db, StorageConfig{})
		if err != nil {
			t.Fatal(err)
		}
		last, _ := st.LastIndex()
		return last
	}()
	for i := range 100 {
		c.put(l.id, fmt.Sprintf("b%d", i), "2")
	}
	// Compact every running member's log past the victim's last entry.
	for _, id := range running(c) {
		m := c.members[id]
		if err := m.node.CompactLog(m.node.AppliedIndex() - catchUpEntries); err != nil {
			t.Fatal(err)
		}
		first, _ := m.st.FirstIndex()
		if first <= victimLast+1 {
			t.Fatalf("member %d compacted to first index %d, not past the victim's last %d", id, first, victimLast)
		}
		if snap, _ := m.st.Snapshot(); snap.Metadata.Index != first-1 || len(snap.Metadata.ConfState.Voters) != 3 {
			t.Fatalf("member %d snapshot metadata %+v after compaction to %d", id, snap.Metadata, first)
		}
	}
	sentBefore := c.members[l.id].node.Metrics().SnapshotsSent
	m := c.start(victim, dir, nil)
	state := c.waitConverged(1, 2, 3)
	if len(state) != 101 {
		t.Fatalf("converged on %d keys, want 101", len(state))
	}
	if got := m.node.Metrics().SnapshotsRestored; got == 0 {
		t.Fatal("the lagging member caught up without a snapshot")
	}
	if c.members[l.id].node.Metrics().SnapshotsSent == sentBefore && c.waitLeader().id == l.id {
		t.Fatal("the leader sent no snapshot")
	}
	// After the snapshot, ordinary replication continues.
	c.put(l.id, "c", "3")
	c.waitConverged(1, 2, 3)
	// And the member restarts from its restored state.
	c.stop(victim)
	m = c.start(victim, dir, nil)
	if len(m.app.state()) < 101 {
		t.Fatalf("restarted after snapshot with %d keys", len(m.app.state()))
	}
	c.waitConverged(1, 2, 3)
}

// A member added after the last log truncation joins by snapshot. The
// truncation's ConfState does not name it, and raft ignores a snapshot
// that does not name the recipient: the node must send the ConfState it
// has reached (regression: the new member was sent the same stale
// snapshot forever).
func TestSnapshotJoin(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	l := c.waitLeader()
	for i := range 50 {
		c.put(l.id, fmt.Sprintf("a%d", i), "1")
	}
	c.waitConverged(1, 2, 3)
	for _, id := range running(c) {
		m := c.members[id]
		if err := m.node.CompactLog(m.node.AppliedIndex() - 5); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		err := c.waitLeader().node.ProposeConfChange(ctx, pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{{Type: pb.ConfChangeAddNode, NodeID: 4}}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("adding member 4: %v", err)
		}
	}
	m := c.start(4, t.TempDir(), nil)
	c.put(c.waitLeader().id, "b", "2")
	if state := c.waitConverged(1, 2, 3, 4); len(state) != 51 {
		t.Fatalf("converged on %d keys, want 51", len(state))
	}
	if m.node.Metrics().SnapshotsRestored == 0 {
		t.Fatal("member 4 caught up without a snapshot")
	}
	if cs := m.app.confState(); fmt.Sprint(cs.Voters) != "[1 2 3 4]" {
		t.Fatalf("member 4's ConfState %v", cs)
	}
}

func TestConfChange(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	l := c.waitLeader()
	c.put(l.id, "a", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	propose := func(cc pb.ConfChangeV2) {
		t.Helper()
		for {
			err := c.waitLeader().node.ProposeConfChange(ctx, cc)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("ProposeConfChange(%v): %v", cc, err)
			}
		}
	}

	// Add 4 as a learner; it starts empty and catches up from the log.
	propose(pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{{Type: pb.ConfChangeAddLearnerNode, NodeID: 4}}})
	c.start(4, t.TempDir(), nil)
	c.put(l.id, "b", "2")
	c.waitConverged(1, 2, 3, 4)
	if st := c.waitLeader().node.Status(); !hasID(st.Config.Learners, 4) {
		t.Fatalf("4 is not a learner: %v", st.Config)
	}

	// Promote it, then remove 3: the voters become 1, 2, 4.
	propose(pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{{Type: pb.ConfChangeAddNode, NodeID: 4}}})
	propose(pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{{Type: pb.ConfChangeRemoveNode, NodeID: 3}}})
	c.stop(3)
	nl := c.waitLeader(1, 2, 4)
	c.put(nl.id, "c", "3")
	state := c.waitConverged(1, 2, 4)
	if len(state) != 3 {
		t.Fatalf("state %v", state)
	}
	for _, id := range []uint64{1, 2, 4} {
		id := id
		c.eventually(5*time.Second, fmt.Sprintf("member %d's applied ConfState", id), func() bool {
			cs := c.members[id].app.confState()
			return fmt.Sprint(cs.Voters) == "[1 2 4]" && len(cs.Learners) == 0
		})
	}

	// A joint change (two changes at once) leaves the joint config by itself.
	propose(pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{
		{Type: pb.ConfChangeAddLearnerNode, NodeID: 5}, {Type: pb.ConfChangeRemoveNode, NodeID: 4}}})
	c.eventually(5*time.Second, "the joint config to be left", func() bool {
		cs := c.members[nl.id].app.confState()
		return len(cs.VotersOutgoing) == 0 && fmt.Sprint(cs.Voters) == "[1 2]" && fmt.Sprint(cs.Learners) == "[5]"
	})
}

func TestLeaderTransfer(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	l := c.waitLeader()
	c.put(l.id, "a", "1")
	c.waitConverged(1, 2, 3)
	target := l.id%3 + 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.node.TransferLeadership(ctx, target); err != nil {
		t.Fatal(err)
	}
	if nl := c.waitLeader(); nl.id != target {
		t.Fatalf("leader %d, want %d", nl.id, target)
	}
	c.put(target, "b", "2")
	c.waitConverged(1, 2, 3)

	// A transfer that cannot complete ends with ErrTimeout.
	c.nw.isolate(l.id)
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.members[target].node.TransferLeadership(ctx, l.id); !errors.Is(err, ErrTimeout) {
		t.Fatalf("transfer to an isolated member: %v, want ErrTimeout", err)
	}
}

func TestTooManyRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"pending-proposals", func(c *Config) { c.MaxPendingProposals = 4; c.MaxProposalBatch = 1 }},
		{"apply-gap", func(c *Config) { c.MaxApplyGapEntries = 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.cfg(&cfg)
			c := newCluster(t, 1, cfg)
			m := c.waitLeader()
			c.put(1, "a", "1")
			// Stall the applier: the apply queue fills, then the raft
			// goroutine waits on it and proposals pile up.
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			defer unblock()
			hook := func() { <-release }
			m.app.applyHook.Store(&hook)
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				errs = map[string]int{}
			)
			burst := func(tag string) {
				for i := range 300 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						err := m.node.Propose(ctx, []byte(fmt.Sprintf("%s%d=v", tag, i)))
						mu.Lock()
						errs[fmt.Sprint(err)]++
						mu.Unlock()
					}()
				}
				wg.Wait()
			}
			burst("x")
			if cfg.MaxApplyGapEntries > 0 {
				// The first burst commits but cannot apply.
				c.eventually(5*time.Second, "a commit-apply gap", func() bool {
					mt := m.node.Metrics()
					return mt.CommittedIndex > mt.AppliedIndex+cfg.MaxApplyGapEntries
				})
			}
			burst("y")
			unblock()
			t.Logf("outcomes: %v", errs)
			if errs[ErrTooManyRequests.Error()] == 0 {
				t.Fatalf("no ErrTooManyRequests among %v", errs)
			}
			if m.node.Metrics().ProposalsRejected == 0 {
				t.Fatal("rejections not counted")
			}
			// The node recovers once the applier does.
			c.put(1, "b", "2")
		})
	}
}

func TestReadIndexBatching(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	// A round then spans a round trip of 2ms, as on a LAN, instead of the
	// few microseconds of a channel hand-off.
	c.nw.mu.Lock()
	c.nw.latency = time.Millisecond
	c.nw.mu.Unlock()
	l := c.waitLeader()
	c.put(l.id, "a", "1")
	c.waitConverged(1, 2, 3)
	for _, via := range []uint64{l.id, l.id%3 + 1} {
		m := c.members[via]
		const readers = 300
		before := m.node.Metrics().ReadIndexRounds
		start := make(chan struct{})
		var wg sync.WaitGroup
		var failed sync.Map
		for i := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				idx, err := m.node.ReadIndex(ctx)
				if err == nil {
					err = m.node.WaitApplied(ctx, idx)
				}
				if err == nil && m.app.state()["a"] != "1" {
					err = errors.New("stale read")
				}
				if err != nil {
					failed.Store(i, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		failed.Range(func(k, v any) bool { t.Errorf("reader %v via %d: %v", k, via, v); return true })
		rounds := m.node.Metrics().ReadIndexRounds - before
		t.Logf("via member %d (leader %t): %d readers, %d ReadIndex rounds", via, via == l.id, readers, rounds)
		if rounds == 0 || rounds > readers/10 {
			t.Errorf("%d readers took %d rounds, want at most %d", readers, rounds, readers/10)
		}
	}
}

func TestReadIndexLinearizable(t *testing.T) {
	// A value acknowledged through one member is visible to a linearizable
	// read through any other.
	c := newCluster(t, 3, testConfig())
	c.waitLeader()
	for i := range 20 {
		w, r := uint64(i%3+1), uint64((i+1)%3+1)
		key, val := fmt.Sprintf("k%d", i), fmt.Sprint(i)
		c.put(w, key, val)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		idx, err := c.members[r].node.ReadIndex(ctx)
		if err == nil {
			err = c.members[r].node.WaitApplied(ctx, idx)
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := c.members[r].app.state()[key]; got != val {
			t.Fatalf("read of %s via %d after write via %d = %q, want %q", key, r, w, got, val)
		}
	}
}

func TestStopFailsCalls(t *testing.T) {
	c := newCluster(t, 1, testConfig())
	m := c.waitLeader()
	c.put(1, "a", "1")
	m.node.Stop()
	ctx := context.Background()
	if err := m.node.Propose(ctx, []byte("b=2")); !errors.Is(err, ErrStopped) {
		t.Errorf("Propose after Stop: %v", err)
	}
	if _, err := m.node.ReadIndex(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("ReadIndex after Stop: %v", err)
	}
	if err := m.node.WaitApplied(ctx, 1<<40); !errors.Is(err, ErrStopped) {
		t.Errorf("WaitApplied after Stop: %v", err)
	}
	if err := m.node.Step(ctx, pb.Message{}); !errors.Is(err, ErrStopped) {
		t.Errorf("Step after Stop: %v", err)
	}
	m.node.Stop() // idempotent
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{ID: 1}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	err := Config{ElectionTicks: 2, HeartbeatTicks: 3, MaxInflightMsgs: -1, MaxPendingReads: -5}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"ID = 0", "ElectionTicks = 2", "MaxInflightMsgs = -1", "MaxPendingReads = -5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not report %q", err, want)
		}
	}
	if d := DefaultConfig(1); !d.PreVote || !d.CheckQuorum || d.ElectionTicks != 10 {
		t.Fatalf("DefaultConfig %+v", d)
	}
	d := Config{ID: 1}.withDefaults()
	if d.TickInterval != 100*time.Millisecond || d.ElectionTicks != 10 || d.HeartbeatTicks != 1 ||
		d.MaxSizePerMsgBytes != 1<<20 || d.MaxInflightMsgs != 512 || d.MaxPendingProposals != 4096 ||
		d.MaxProposalBatch != 256 || d.PreVote || d.CheckQuorum {
		t.Fatalf("defaults %+v", d)
	}
}

func TestApplyWait(t *testing.T) {
	w := newApplyWait(5)
	select {
	case <-w.wait(5):
	default:
		t.Fatal("wait(5) at applied 5 not ready")
	}
	c7, c7b, c9 := w.wait(7), w.wait(7), w.wait(9)
	if c7 != c7b {
		t.Fatal("waiters of one index do not share a channel")
	}
	w.trigger(8)
	for name, ch := range map[string]<-chan struct{}{"7": c7} {
		select {
		case <-ch:
		default:
			t.Fatalf("wait(%s) not released at 8", name)
		}
	}
	select {
	case <-c9:
		t.Fatal("wait(9) released at 8")
	default:
	}
	w.trigger(3) // never goes back
	if w.applied() != 8 {
		t.Fatalf("applied = %d", w.applied())
	}
	w.trigger(9)
	<-c9
	if len(w.mu.byIndex) != 0 || len(w.mu.order) != 0 {
		t.Fatal("released waiters not forgotten")
	}
}

func hasID(set map[uint64]struct{}, id uint64) bool {
	_, ok := set[id]
	return ok
}

func TestProposalBatchBounds(t *testing.T) {
	// With a one-byte bound every MsgProp carries a single proposal; with
	// the defaults, concurrent proposals share MsgProps.
	for _, tc := range []struct {
		name     string
		maxBytes uint64
		batched  bool
	}{{"one-byte", 1, false}, {"default", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxProposalBatchBytes = tc.maxBytes
			c := newCluster(t, 1, cfg)
			m := c.waitLeader()
			release := make(chan struct{})
			hook := func() { <-release }
			m.app.applyHook.Store(&hook) // let proposals queue up behind a stalled loop
			before := m.node.Metrics()
			var wg sync.WaitGroup
			for i := range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := m.node.Propose(ctx, []byte(fmt.Sprintf("k%d=v", i))); err != nil {
						t.Error(err)
					}
				}()
			}
			time.Sleep(100 * time.Millisecond)
			close(release)
			wg.Wait()
			mt := m.node.Metrics()
			props, batches := mt.Proposals-before.Proposals, mt.ProposalBatches-before.ProposalBatches
			t.Logf("%d proposals in %d MsgProps", props, batches)
			if props != 100 || (batches < props) == !tc.batched {
				t.Fatalf("%d proposals in %d MsgProps, batched=%t wanted", props, batches, tc.batched)
			}
		})
	}
}

// TestProposeAsync: entries raft takes are applied and send nothing on
// their refusal channel; an entry raft refuses (a member that knows no
// leader) gets its error there, and a stopped node refuses at once.
func TestProposeAsync(t *testing.T) {
	c := newCluster(t, 3, testConfig())
	l := c.waitLeader()
	const n = 50
	refused := make([]chan error, n)
	for i := range n {
		refused[i] = make(chan error, 1)
		ch := refused[i]
		if err := l.node.ProposeAsync(context.Background(), []byte(fmt.Sprintf("a%02d=%d", i, i)), func(err error) { ch <- err }); err != nil {
			t.Fatalf("ProposeAsync %d: %v", i, err)
		}
	}
	c.eventually(10*time.Second, "the async proposals to apply", func() bool {
		st := l.app.state()
		for i := range n {
			if st[fmt.Sprintf("a%02d", i)] != fmt.Sprint(i) {
				return false
			}
		}
		return true
	})
	for i, ch := range refused {
		select {
		case err := <-ch:
			t.Fatalf("proposal %d was applied, yet refused: %v", i, err)
		default:
		}
	}

	var f *member
	for _, id := range running(c) {
		if id != l.id {
			f = c.members[id]
			break
		}
	}
	c.nw.isolate(f.id)
	c.eventually(10*time.Second, "the isolated follower to lose its leader", func() bool { return f.node.Leader() == 0 })
	ch := make(chan error, 1)
	if err := f.node.ProposeAsync(context.Background(), []byte("lost=1"), func(err error) { ch <- err }); err != nil {
		t.Fatalf("ProposeAsync on a member without leader: %v (want the refusal on the channel)", err)
	}
	select {
	case err := <-ch:
		if !errors.Is(err, ErrNoLeader) {
			t.Fatalf("refusal %v, want ErrNoLeader", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no refusal for a proposal to a member without leader")
	}
	c.nw.heal()

	c.stop(f.id)
	select {
	case <-f.node.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := f.node.ProposeAsync(context.Background(), []byte("x=1"), func(error) { t.Error("refused after Stop") }); !errors.Is(err, ErrStopped) {
		t.Fatalf("ProposeAsync after Stop: %v, want ErrStopped", err)
	}
}
