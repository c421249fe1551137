package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metastore/metastore/engine/failpoint"
)

// Faults: one per run. Each injects its fault, waits for it to act,
// removes it (restarting what it killed) and reports how long every
// restarted member took to serve again.

const (
	// killDowntime is how long a killed member stays down.
	killDowntime = 500 * time.Millisecond
	// pauseDuration is how long SIGSTOP holds the leader: longer than the
	// election timeout, so the others elect a new leader.
	pauseDuration = 2 * electionTimeoutMs * time.Millisecond
	// networkFaultDuration is how long a blackhole, delay or drop lasts.
	networkFaultDuration = 3 * time.Second
	// delayMs and delayJitterMs are the 75±50 ms delay.
	delayMs, delayJitterMs = 75, 50
	// dropProbability is the share of messages the drop fault loses.
	dropProbability = 0.5
	// failpointHitTimeout bounds how long a member may run with a panic
	// failpoint set before it is reached.
	failpointHitTimeout = 15 * time.Second
	// snapshotNeedTimeout bounds how long a cut-off follower waits for the
	// leader's log to be truncated past it, and then for its snapshot.
	snapshotNeedTimeout = 30 * time.Second
	// leaderTimeout bounds the wait for a leader.
	leaderTimeout = 15 * time.Second
)

// faultEnv is what a fault acts on.
type faultEnv struct {
	c        *cluster
	t        *traffic
	rng      *rand.Rand
	restarts []time.Duration // serving delay of every restarted member
	notes    []string
}

func (e *faultEnv) note(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

type fault struct {
	name       string
	minMembers int
	inject     func(e *faultEnv) error
}

// faults is every fault the suite injects.
var faults = []fault{
	{"kill-leader", 1, func(e *faultEnv) error { return e.killRestart(e.leader) }},
	{"kill-follower", 3, func(e *faultEnv) error { return e.killRestart(e.follower) }},
	{"kill-all", 1, killAll},
	{"pause-leader", 1, pauseLeader},
	{"blackhole-leader", 3, blackholeLeader},
	{"blackhole-follower-snapshot", 3, func(e *faultEnv) error { _, err := e.cutFollowerUntilSnapshot("", ""); return err }},
	{"delay", 3, func(e *faultEnv) error {
		return e.allPeers(fmt.Sprintf("op=delay&ms=%d&jitter=%d", delayMs, delayJitterMs))
	}},
	{"drop", 3, func(e *faultEnv) error { return e.allPeers(fmt.Sprintf("op=drop&p=%v", dropProbability)) }},
	{"replace-member", 3, replaceMember},
	{"panic-" + failpoint.RaftBeforeSave, 1, func(e *faultEnv) error { return e.panicAt(failpoint.RaftBeforeSave) }},
	{"panic-" + failpoint.RaftAfterSave, 1, func(e *faultEnv) error { return e.panicAt(failpoint.RaftAfterSave) }},
	{"panic-" + failpoint.ApplyBeforeBatch, 1, func(e *faultEnv) error { return e.panicAt(failpoint.ApplyBeforeBatch) }},
	{"panic-" + failpoint.ApplyAfterBatch, 1, func(e *faultEnv) error { return e.panicAt(failpoint.ApplyAfterBatch) }},
	{"panic-" + failpoint.CompactMid, 1, panicMidCompaction},
	{"panic-" + failpoint.SnapshotSendMid, 3, func(e *faultEnv) error {
		_, err := e.cutFollowerUntilSnapshot(failpoint.SnapshotSendMid, "leader")
		return err
	}},
	{"panic-" + failpoint.SnapshotInstallMid, 3, func(e *faultEnv) error {
		_, err := e.cutFollowerUntilSnapshot(failpoint.SnapshotInstallMid, "follower")
		return err
	}},
}

// faultsFor lists the faults that apply to a cluster of n members.
func faultsFor(n int) []fault {
	var out []fault
	for _, f := range faults {
		if n >= f.minMembers {
			out = append(out, f)
		}
	}
	return out
}

func faultByName(name string) (fault, bool) {
	for _, f := range faults {
		if f.name == name {
			return f, true
		}
	}
	return fault{}, false
}

func faultNames() string {
	var n []string
	for _, f := range faults {
		n = append(n, f.name)
	}
	return strings.Join(n, ", ")
}

func (e *faultEnv) leader() (*member, error) {
	i, err := e.c.leader(leaderTimeout)
	if err != nil {
		return nil, err
	}
	return e.c.members[i], nil
}

func (e *faultEnv) follower() (*member, error) {
	i, err := e.c.leader(leaderTimeout)
	if err != nil {
		return nil, err
	}
	j := (i + 1 + e.rng.IntN(len(e.c.members)-1)) % len(e.c.members)
	return e.c.members[j], nil
}

// restart starts m again and records how long it took to serve.
func (e *faultEnv) restart(m *member) error {
	if err := e.c.restart(m); err != nil {
		return err
	}
	d, err := m.waitServing(memberReadyTimeout)
	if err != nil {
		return fmt.Errorf("restart bound: %w", err)
	}
	e.restarts = append(e.restarts, d)
	e.note("%s served %v after its restart", m.name, d.Round(time.Millisecond))
	return nil
}

func (e *faultEnv) killRestart(pick func() (*member, error)) error {
	m, err := pick()
	if err != nil {
		return err
	}
	e.note("SIGKILL %s", m.name)
	if err := m.kill(syscall.SIGKILL); err != nil {
		return err
	}
	time.Sleep(killDowntime)
	return e.restart(m)
}

func killAll(e *faultEnv) error {
	for _, m := range e.c.members {
		if err := m.kill(syscall.SIGKILL); err != nil {
			return err
		}
	}
	e.note("SIGKILL every member")
	time.Sleep(killDowntime)
	for _, m := range e.c.members {
		if err := e.c.restart(m); err != nil {
			return err
		}
	}
	for _, m := range e.c.members {
		d, err := m.waitServing(memberReadyTimeout)
		if err != nil {
			return fmt.Errorf("restart bound: %w", err)
		}
		e.restarts = append(e.restarts, d)
	}
	return nil
}

func pauseLeader(e *faultEnv) error {
	m, err := e.leader()
	if err != nil {
		return err
	}
	e.note("SIGSTOP %s (leader) for %v", m.name, pauseDuration)
	if err := m.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	time.Sleep(pauseDuration)
	return m.signal(syscall.SIGCONT)
}

// hexID is a member's ID as the fault layer takes it.
func hexID(m *member) (string, error) {
	id, err := m.memberID()
	if err != nil {
		return "", err
	}
	return strconv.FormatUint(id, 16), nil
}

// isolate cuts m off from every other member, both ways.
func (e *faultEnv) isolate(m *member) error {
	for _, p := range e.c.members {
		if p == m {
			continue
		}
		id, err := hexID(p)
		if err != nil {
			return err
		}
		for _, op := range []string{"blackhole", "blackhole-from"} {
			if err := m.fault("op=" + op + "&peer=" + id); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *faultEnv) healAll() error {
	var first error
	for _, m := range e.c.members {
		if !m.running() {
			continue
		}
		if err := m.fault("op=heal"); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func blackholeLeader(e *faultEnv) error {
	m, err := e.leader()
	if err != nil {
		return err
	}
	e.note("blackhole %s (leader) for %v", m.name, networkFaultDuration)
	if err := e.isolate(m); err != nil {
		return err
	}
	time.Sleep(networkFaultDuration)
	return e.healAll()
}

// allPeers sets one fault on every member towards every other member for
// networkFaultDuration.
func (e *faultEnv) allPeers(query string) error {
	ids := map[*member]string{}
	for _, m := range e.c.members {
		id, err := hexID(m)
		if err != nil {
			return err
		}
		ids[m] = id
	}
	e.note("%s between every pair for %v", query, networkFaultDuration)
	for _, m := range e.c.members {
		if err := m.fault(fmt.Sprintf("op=seed&n=%d", e.rng.Uint64()>>1)); err != nil {
			return err
		}
		for _, p := range e.c.members {
			if p != m {
				if err := m.fault(query + "&peer=" + ids[p]); err != nil {
					return err
				}
			}
		}
	}
	time.Sleep(networkFaultDuration)
	return e.healAll()
}

// cutFollowerUntilSnapshot isolates a follower until the leader's raft log
// starts past the follower's applied index, then heals, so the leader must
// send a snapshot. With point set, that failpoint panics the leader
// (where == "leader") or the follower (where == "follower") on the way;
// the panicked member is restarted.
func (e *faultEnv) cutFollowerUntilSnapshot(point, where string) (*member, error) {
	lead, err := e.leader()
	if err != nil {
		return nil, err
	}
	f, err := e.follower()
	if err != nil {
		return nil, err
	}
	cli, err := f.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	st, err := cli.Status(ctx, f.clientURL)
	cancel()
	cli.Close()
	if err != nil {
		return nil, err
	}
	applied := st.RaftAppliedIndex
	leadID, err := hexID(lead)
	if err != nil {
		return nil, err
	}
	if err := e.isolate(f); err != nil {
		return nil, err
	}
	e.note("isolated %s (follower at index %d) until %s's log starts past it", f.name, applied, lead.name)
	// Writes through the leader alone (the traffic's clients stall on the
	// cut-off member) move the log past the follower quickly.
	go e.t.burst(context.Background(), []string{lead.clientURL})
	deadline := time.Now().Add(snapshotNeedTimeout)
	for {
		fs, err := lead.faults()
		if err == nil && fs.RaftLogFirstIndex > applied+1 {
			break
		}
		if time.Now().After(deadline) {
			e.healAll()
			return nil, fmt.Errorf("%s's raft log did not move past index %d within %v", lead.name, applied, snapshotNeedTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	before, _ := f.faults()
	victim := map[string]*member{"leader": lead, "follower": f}[where]
	if victim != nil {
		victim.expectExit()
		if err := victim.setFailpoint(point, "1*panic"); err != nil {
			return nil, err
		}
		e.note("set %s=1*panic on %s", point, victim.name)
	}
	if err := e.healAll(); err != nil {
		return nil, err
	}
	if victim != nil {
		if err := victim.waitExit(failpointHitTimeout); err != nil {
			victim.setFailpoint(point, "off")
			return nil, fmt.Errorf("failpoint %s not reached: %w", point, err)
		}
		e.note("%s panicked at %s", victim.name, point)
		time.Sleep(killDowntime)
		if err := e.restart(victim); err != nil {
			return nil, err
		}
		if victim == lead {
			return f, nil // the new leader sends the snapshot; f's wait below covers it
		}
	}
	deadline = time.Now().Add(snapshotNeedTimeout)
	for {
		fs, err := f.faults()
		if err == nil && fs.Peers[leadID].SnapshotsReceived > before.Peers[leadID].SnapshotsReceived {
			e.note("%s received a snapshot", f.name)
			break
		}
		if victim == f && err == nil {
			break // restarted: its counters started over; serving is the proof
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s received no snapshot within %v of the heal", f.name, snapshotNeedTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return f, nil
}

// panicAt sets point=1*panic on a member the point will be reached on (a
// random one: every member saves and applies), waits for the panic and
// restarts the member.
func (e *faultEnv) panicAt(point string) error {
	m := e.c.members[e.rng.IntN(len(e.c.members))]
	m.expectExit()
	if err := m.setFailpoint(point, "1*panic"); err != nil {
		return err
	}
	if err := m.waitExit(failpointHitTimeout); err != nil {
		m.setFailpoint(point, "off")
		return fmt.Errorf("failpoint %s not reached on %s: %w", point, m.name, err)
	}
	e.note("%s panicked at %s", m.name, point)
	time.Sleep(killDowntime)
	return e.restart(m)
}

// panicMidCompaction holds compaction back, writes more revisions than one
// compaction batch holds, arms compactMid on a member and compacts: the
// member panics between two batches of the compaction.
func panicMidCompaction(e *faultEnv) error {
	e.t.pauseCompact.Store(true)
	defer e.t.pauseCompact.Store(false)
	time.Sleep(compactIntervalMaxMs * time.Millisecond) // let a compaction in flight end
	if err := e.t.burst(context.Background(), e.c.endpoints()); err != nil {
		return err
	}
	m := e.c.members[e.rng.IntN(len(e.c.members))]
	m.expectExit()
	if err := m.setFailpoint(failpoint.CompactMid, "1*panic"); err != nil {
		return err
	}
	cli, err := newClient(e.c.endpoints())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	rev := e.t.lastRev.Load()
	e.t.rec.addCompaction(Compaction{Time: e.t.rec.now(), Rev: rev})
	_, err = cli.Compact(ctx, rev)
	cancel()
	if err != nil {
		e.note("compact: %v", err)
	}
	if err := m.waitExit(failpointHitTimeout); err != nil {
		m.setFailpoint(failpoint.CompactMid, "off")
		return fmt.Errorf("failpoint %s not reached on %s: %w", failpoint.CompactMid, m.name, err)
	}
	e.note("%s panicked at %s", m.name, failpoint.CompactMid)
	time.Sleep(killDowntime)
	return e.restart(m)
}

// replaceMember removes a follower, wipes its data, adds it back as a new
// member and starts it empty: it catches up from a snapshot.
func replaceMember(e *faultEnv) error {
	f, err := e.follower()
	if err != nil {
		return err
	}
	id, err := f.memberID()
	if err != nil {
		return err
	}
	cli, err := newClient(e.c.endpoints())
	if err != nil {
		return err
	}
	defer cli.Close()
	f.expectExit() // a removed member may stop by itself
	ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
	_, err = cli.MemberRemove(ctx, id)
	cancel()
	if err != nil {
		return fmt.Errorf("member remove %s: %w", f.name, err)
	}
	if err := f.kill(syscall.SIGKILL); err != nil {
		return err
	}
	if err := os.RemoveAll(f.dataDir); err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*requestTimeout)
	_, err = cli.MemberAdd(ctx, []string{f.peerURL})
	cancel()
	if err != nil {
		return fmt.Errorf("member add %s: %w", f.name, err)
	}
	f.gen.Add(1)
	var initial []string
	for _, m := range e.c.members {
		initial = append(initial, m.name+"="+m.peerURL)
	}
	e.note("replaced %s (removed, wiped, added back)", f.name)
	if err := f.start(strings.Join(initial, ","), "existing"); err != nil {
		return err
	}
	d, err := f.waitServing(memberReadyTimeout)
	if err != nil {
		return fmt.Errorf("restart bound: %w", err)
	}
	e.restarts = append(e.restarts, d)
	return nil
}
