package raftlog_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/raftlog"
	"github.com/metastore/metastore/tuning"
)

// counter is a minimal Applier: it counts applied entries and persists the
// count with the applied index in one batch, as the contract asks.
type counter struct {
	db      *engine.DB
	applied atomic.Uint64
	count   atomic.Uint64
	// three is closed when the third entry applies: a server learns of
	// each of its proposals' commit this way (etcd's wait registry).
	three chan struct{}
}

func (c *counter) Apply(ents []raftpb.Entry, _ map[uint64]raftpb.ConfState) {
	for _, e := range ents {
		if e.Type == raftpb.EntryNormal && len(e.Data) > 0 && c.count.Add(1) == 3 {
			defer close(c.three)
		}
	}
	b := c.db.NewBatch()
	b.Put(engine.CFMeta, []byte("count"), binary.BigEndian.AppendUint64(nil, c.count.Load()))
	b.Put(engine.CFMeta, []byte("applied"), binary.BigEndian.AppendUint64(nil, ents[len(ents)-1].Index))
	if err := c.db.Write(b, false); err != nil {
		panic(err) // a state machine that cannot persist must stop
	}
	c.applied.Store(ents[len(ents)-1].Index)
}

func (c *counter) AppliedIndex() uint64 { return c.applied.Load() }

func (c *counter) RestoreSnapshot(raftpb.Snapshot) error { return nil } // single member: never called

type noTransport struct{}

func (noTransport) Send([]raftpb.Message) {}

// A single-member cluster: propose, then read linearizably.
func ExampleStartNode() {
	dir, _ := os.MkdirTemp("", "raftlog-example")
	defer os.RemoveAll(dir)
	db, err := engine.Open(dir, tuning.LowMemory())
	if err != nil {
		panic(err)
	}
	defer db.Close()
	st, err := raftlog.Open(db, raftlog.StorageConfig{})
	if err != nil {
		panic(err)
	}
	app := &counter{db: db, three: make(chan struct{})}
	cfg := raftlog.DefaultConfig(1)
	cfg.TickInterval = 10e6 // 10ms, to elect quickly
	n, err := raftlog.StartNode(cfg, st, noTransport{}, app, []raftlog.Peer{{ID: 1}}, nil)
	if err != nil {
		panic(err)
	}
	defer n.Stop()

	ctx := context.Background()
	for !n.IsLeader() {
		<-n.LeaderChanges()
	}
	for i := range 3 {
		if err := n.Propose(ctx, []byte(fmt.Sprint(i))); err != nil {
			panic(err)
		}
	}
	<-app.three // the writes are committed and applied
	// A linearizable read: once idx is applied, the state reflects every
	// write completed before ReadIndex was called.
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		panic(err)
	}
	if err := n.WaitApplied(ctx, idx); err != nil {
		panic(err)
	}
	fmt.Println("applied entries:", app.count.Load())
	// Output: applied entries: 3
}
