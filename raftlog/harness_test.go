package raftlog

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/metastore/metastore/engine"
)

// kvApplier is the tests' state machine: "key=value" entries set keys. The
// state lives in the engine (CFKV) with the applied index and ConfState in
// CFMeta, all written in one batch per Apply, as the Applier contract asks;
// a map mirrors it for the tests' comparisons.
type kvApplier struct {
	db      *engine.DB
	applied atomic.Uint64
	mu      struct {
		sync.Mutex
		kv map[string]string
		cs pb.ConfState
	}
	// applyHook, if set, runs at the start of every Apply; onApplied, if
	// set, is called with every key applied.
	applyHook atomic.Pointer[func()]
	onApplied atomic.Pointer[func(key string)]
}

var (
	metaApplied   = []byte("applied")
	metaConfState = []byte("confstate")
)

func newKVApplier(t testing.TB, db *engine.DB) *kvApplier {
	t.Helper()
	a := &kvApplier{db: db}
	a.mu.kv = map[string]string{}
	if v, ok, err := db.Get(engine.CFMeta, metaApplied); err != nil {
		t.Fatal(err)
	} else if ok {
		a.applied.Store(binary.BigEndian.Uint64(v))
	}
	if v, ok, err := db.Get(engine.CFMeta, metaConfState); err != nil {
		t.Fatal(err)
	} else if ok {
		if err := a.mu.cs.Unmarshal(v); err != nil {
			t.Fatal(err)
		}
	}
	it, err := db.NewIterator(engine.CFKV, engine.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		a.mu.kv[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *kvApplier) Apply(ents []pb.Entry, confStates map[uint64]pb.ConfState) {
	if err := a.apply(ents, confStates); err != nil {
		panic(fmt.Sprintf("kvApplier: %v", err)) // fatal, as the contract says
	}
}

func (a *kvApplier) apply(ents []pb.Entry, confStates map[uint64]pb.ConfState) error {
	if h := a.applyHook.Load(); h != nil {
		(*h)()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.db.NewBatch()
	for _, e := range ents {
		if cs, ok := confStates[e.Index]; ok {
			a.mu.cs = cs
			data, err := cs.Marshal()
			if err != nil {
				return err
			}
			b.Put(engine.CFMeta, metaConfState, data)
		}
		if e.Type != pb.EntryNormal || len(e.Data) == 0 {
			continue
		}
		k, v, ok := strings.Cut(string(e.Data), "=")
		if !ok {
			return fmt.Errorf("bad entry %q", e.Data)
		}
		b.Put(engine.CFKV, []byte(k), []byte(v))
		a.mu.kv[k] = v
	}
	last := ents[len(ents)-1].Index
	b.Put(engine.CFMeta, metaApplied, binary.BigEndian.AppendUint64(nil, last))
	if err := a.db.Write(b, false); err != nil {
		return err
	}
	a.applied.Store(last)
	if h := a.onApplied.Load(); h != nil {
		for _, e := range ents {
			if e.Type == pb.EntryNormal && len(e.Data) > 0 {
				k, _, _ := strings.Cut(string(e.Data), "=")
				(*h)(k)
			}
		}
	}
	return nil
}

func (a *kvApplier) AppliedIndex() uint64 { return a.applied.Load() }

// kvSnapshot is what the test transport puts in Snapshot.Data: the whole
// state, standing in for an engine checkpoint.
type kvSnapshot struct {
	Applied uint64
	KV      map[string]string
	CS      pb.ConfState
}

func (a *kvApplier) snapshotData() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	data, _ := json.Marshal(kvSnapshot{Applied: a.applied.Load(), KV: a.mu.kv, CS: a.mu.cs})
	return data
}

func (a *kvApplier) RestoreSnapshot(snap pb.Snapshot) error {
	var s kvSnapshot
	if err := json.Unmarshal(snap.Data, &s); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.db.NewBatch()
	for k := range a.mu.kv {
		b.Delete(engine.CFKV, []byte(k))
	}
	for k, v := range s.KV {
		b.Put(engine.CFKV, []byte(k), []byte(v))
	}
	csData, _ := s.CS.Marshal()
	b.Put(engine.CFMeta, metaConfState, csData)
	b.Put(engine.CFMeta, metaApplied, binary.BigEndian.AppendUint64(nil, s.Applied))
	if err := a.db.Write(b, false); err != nil {
		return err
	}
	a.mu.kv = s.KV
	if a.mu.kv == nil {
		a.mu.kv = map[string]string{}
	}
	a.mu.cs = s.CS
	a.applied.Store(s.Applied)
	return nil
}

func (a *kvApplier) state() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.mu.kv)
}

func (a *kvApplier) confState() pb.ConfState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.cs
}

// memNetwork connects in-process members. Each member has a bounded inbox
// drained by one goroutine into Node.Step; a full inbox drops, as a
// congested network would. Links can be cut per direction.
type memNetwork struct {
	mu      sync.Mutex
	nodes   map[uint64]*member
	cut     map[[2]uint64]bool
	inboxes map[uint64]chan timedMsg
	// latency delays every delivery; set before traffic starts.
	latency time.Duration
	stopc   chan struct{}
	wg      sync.WaitGroup
	msgs    atomic.Uint64 // messages delivered
}

const memInboxMsgs = 4096

// timedMsg is a message and the time it may be delivered.
type timedMsg struct {
	m  pb.Message
	at time.Time
}

func newMemNetwork() *memNetwork {
	return &memNetwork{nodes: map[uint64]*member{}, cut: map[[2]uint64]bool{},
		inboxes: map[uint64]chan timedMsg{}, stopc: make(chan struct{})}
}

func (nw *memNetwork) register(m *member) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.nodes[m.id] = m
	if _, ok := nw.inboxes[m.id]; ok {
		return
	}
	in := make(chan timedMsg, memInboxMsgs)
	nw.inboxes[m.id] = in
	nw.wg.Add(1)
	go func() {
		defer nw.wg.Done()
		for {
			select {
			case tm := <-in:
				if d := time.Until(tm.at); d > 0 {
					time.Sleep(d)
				}
				msg := tm.m
				if n := nw.node(m.id); n != nil {
					_ = n.Step(context.Background(), msg)
					nw.msgs.Add(1)
				}
			case <-nw.stopc:
				return
			}
		}
	}()
}

func (nw *memNetwork) node(id uint64) *Node {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if m := nw.nodes[id]; m != nil && m.running() {
		return m.node
	}
	return nil
}

// isolate cuts every link to and from id; heal restores all links.
func (nw *memNetwork) isolate(id uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for other := range nw.nodes {
		if other != id {
			nw.cut[[2]uint64{id, other}] = true
			nw.cut[[2]uint64{other, id}] = true
		}
	}
}

func (nw *memNetwork) heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.cut)
}

func (nw *memNetwork) deliver(msg pb.Message) bool {
	nw.mu.Lock()
	in, ok := nw.inboxes[msg.To]
	cut := nw.cut[[2]uint64{msg.From, msg.To}]
	nw.mu.Unlock()
	if !ok || cut {
		return false
	}
	select {
	case in <- timedMsg{msg, time.Now().Add(nw.latency)}:
		return true
	default:
		return false
	}
}

func (nw *memNetwork) close() {
	close(nw.stopc)
	nw.wg.Wait()
}

// memTransport is one member's end of a memNetwork.
type memTransport struct {
	nw *memNetwork
	id uint64
}

func (tr memTransport) Send(msgs []pb.Message) {
	for _, m := range msgs {
		if !tr.nw.deliver(m) && m.Type == pb.MsgApp {
			// Tell raft, as a real transport would; it probes again.
			if n := tr.nw.node(tr.id); n != nil {
				n.ReportUnreachable(m.To)
			}
		}
	}
}

// SendSnapshot fills Data with the sender's whole state (standing in for a
// streamed engine checkpoint, which may be newer than the metadata) and
// reports the outcome, as the SnapshotSender contract requires.
func (tr memTransport) SendSnapshot(m pb.Message) {
	go func() {
		status := raft.SnapshotFailure
		tr.nw.mu.Lock()
		from := tr.nw.nodes[tr.id]
		tr.nw.mu.Unlock()
		if from != nil {
			snap := *m.Snapshot
			snap.Data = from.app.snapshotData()
			m.Snapshot = &snap
			if tr.nw.deliver(m) {
				status = raft.SnapshotFinish
			}
		}
		if n := tr.nw.node(tr.id); n != nil {
			n.ReportSnapshot(m.To, status)
		}
	}()
}

// member is one in-process cluster member with its own engine directory.
type member struct {
	id   uint64
	dir  string
	db   *engine.DB
	st   *Storage
	app  *kvApplier
	node *Node
	up   atomic.Bool
}

func (m *member) running() bool { return m.up.Load() }

type cluster struct {
	t       testing.TB
	nw      *memNetwork
	members map[uint64]*member
	cfg     Config
	lg      *zap.Logger
}

// testConfig is fast enough for tests and slow enough for -race on two
// cores: 10ms ticks, elections after 200-400ms.
func testConfig() Config {
	return Config{TickInterval: 10 * time.Millisecond, ElectionTicks: 20, HeartbeatTicks: 2,
		PreVote: true, CheckQuorum: true, ReadIndexRetryInterval: 100 * time.Millisecond}
}

func newCluster(t testing.TB, size int, cfg Config) *cluster {
	c := &cluster{t: t, nw: newMemNetwork(), members: map[uint64]*member{}, cfg: cfg}
	if tt, ok := t.(*testing.T); ok {
		c.lg = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	} else {
		c.lg = zap.NewNop()
	}
	var peers []Peer
	for id := uint64(1); id <= uint64(size); id++ {
		peers = append(peers, Peer{ID: id})
	}
	for _, p := range peers {
		c.start(p.ID, t.TempDir(), peers)
	}
	t.Cleanup(c.close)
	return c
}

// start opens (or reopens) member id's engine in dir and starts its node.
func (c *cluster) start(id uint64, dir string, peers []Peer) *member {
	c.t.Helper()
	m := &member{id: id, dir: dir}
	m.db = openTestEngine(c.t, dir)
	var err error
	m.st, err = Open(m.db, StorageConfig{Logger: c.lg})
	if err != nil {
		c.t.Fatal(err)
	}
	m.app = newKVApplier(c.t, m.db)
	cfg := c.cfg
	cfg.ID = id
	m.node, err = StartNode(cfg, m.st, memTransport{c.nw, id}, m.app, peers, c.lg)
	if err != nil {
		c.t.Fatal(err)
	}
	m.up.Store(true)
	c.members[id] = m
	c.nw.register(m)
	return m
}

// stop stops member id's node and closes its engine.
func (c *cluster) stop(id uint64) {
	m := c.members[id]
	if !m.up.Swap(false) {
		return
	}
	m.node.Stop()
	if err := m.db.Close(); err != nil {
		c.t.Errorf("closing member %d's engine: %v", id, err)
	}
}

func (c *cluster) close() {
	for id := range c.members {
		c.stop(id)
	}
	c.nw.close()
}

// waitLeader waits until every running member in ids (all running members
// if none) agrees on one leader among them, and returns it.
func (c *cluster) waitLeader(ids ...uint64) *member {
	c.t.Helper()
	if len(ids) == 0 {
		for id, m := range c.members {
			if m.running() {
				ids = append(ids, id)
			}
		}
	}
	var lead uint64
	c.eventually(10*time.Second, "a leader", func() bool {
		lead = c.members[ids[0]].node.Leader()
		if lead == 0 {
			return false
		}
		found := false
		for _, id := range ids {
			if c.members[id].node.Leader() != lead {
				return false
			}
			found = found || id == lead
		}
		return found && c.members[lead].node.IsLeader()
	})
	return c.members[lead]
}

// eventually polls cond (a test helper; the node itself never polls).
func (c *cluster) eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// put proposes key=value through member id, retrying on leader changes and
// lost proposals, until it is applied there.
func (c *cluster) put(id uint64, key, value string) {
	c.t.Helper()
	m := c.members[id]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := m.node.Propose(pctx, []byte(key+"="+value))
		if err == nil {
			for pctx.Err() == nil && m.app.state()[key] != value {
				idx, rerr := m.node.ReadIndex(pctx)
				if rerr == nil {
					_ = m.node.WaitApplied(pctx, idx)
				}
			}
			if m.app.state()[key] == value {
				pcancel()
				return
			}
		}
		pcancel()
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("put %s=%s through member %d did not apply", key, value, id)
}

// waitConverged waits until the running members in ids have applied the
// same state, and returns it.
func (c *cluster) waitConverged(ids ...uint64) map[string]string {
	c.t.Helper()
	var want map[string]string
	c.eventually(20*time.Second, fmt.Sprintf("members %v to converge", ids), func() bool {
		want = c.members[ids[0]].app.state()
		for _, id := range ids[1:] {
			if !maps.Equal(c.members[id].app.state(), want) {
				return false
			}
		}
		return true
	})
	return want
}

func running(c *cluster) []uint64 {
	var ids []uint64
	for id, m := range c.members {
		if m.running() {
			ids = append(ids, id)
		}
	}
	return ids
}
