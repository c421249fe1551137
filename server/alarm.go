package server

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// quotaCheckInterval is how often the engine's size is sampled for the
// quota and for Status.
const quotaCheckInterval = time.Second

// alarmStore holds the cluster's alarms (replicated through raft) and this
// member's sampled database size.
type alarmStore struct {
	s *Server

	dbSizeBytes      atomic.Int64 // physical: live SST and blob files plus memtables
	dbSizeInUseBytes atomic.Int64 // RocksDB's estimate of live data
	raising          atomic.Bool  // a NOSPACE proposal is in flight
	diskLow          atomic.Bool  // free disk space below DiskReserveBytes (diskspace.go)

	mu struct {
		sync.RWMutex
		alarms map[alarmKey]bool
	}
}

type alarmKey struct {
	member uint64
	alarm  pb.AlarmType
}

const metaAlarmPrefix = "alarm/"

func alarmMetaKey(k alarmKey) []byte {
	return []byte(fmt.Sprintf("%s%016x/%d", metaAlarmPrefix, k.member, int32(k.alarm)))
}

// decodeAlarmMetaKey is alarmMetaKey's inverse. It accepts only the
// canonical form alarmMetaKey writes, because DEACTIVATE deletes exactly that
// key: an alarm read from any other spelling would come back at every start.
func decodeAlarmMetaKey(b []byte) (alarmKey, error) {
	var k alarmKey
	var t int32
	if !bytes.HasPrefix(b, []byte(metaAlarmPrefix)) {
		return alarmKey{}, fmt.Errorf("server: corrupt alarm key %q", b)
	}
	if _, err := fmt.Sscanf(string(b[len(metaAlarmPrefix):]), "%016x/%d", &k.member, &t); err != nil {
		return alarmKey{}, fmt.Errorf("server: corrupt alarm key %q", b)
	}
	k.alarm = pb.AlarmType(t)
	if _, known := pb.AlarmType_name[t]; !known || !bytes.Equal(alarmMetaKey(k), b) {
		return alarmKey{}, fmt.Errorf("server: corrupt alarm key %q", b)
	}
	return k, nil
}

func newAlarmStore(s *Server) *alarmStore {
	a := &alarmStore{s: s}
	a.mu.alarms = map[alarmKey]bool{}
	return a
}

// load reads the persisted alarms, replacing those in memory.
func (a *alarmStore) load() error {
	a.mu.Lock()
	clear(a.mu.alarms)
	a.mu.Unlock()
	it, err := a.s.db.NewIterator(engine.CFMeta, engine.IterOptions{Lower: []byte(metaAlarmPrefix), Upper: prefixEnd([]byte(metaAlarmPrefix))})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k, err := decodeAlarmMetaKey(it.Key())
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.mu.alarms[k] = true
		a.mu.Unlock()
	}
	a.sample()
	return it.Error()
}

func (a *alarmStore) active(t pb.AlarmType) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for k := range a.mu.alarms {
		if k.alarm == t {
			return true
		}
	}
	return false
}

// list returns the active alarms, sorted.
func (a *alarmStore) list() []*pb.AlarmMember {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]*pb.AlarmMember, 0, len(a.mu.alarms))
	for k := range a.mu.alarms {
		out = append(out, &pb.AlarmMember{MemberID: k.member, Alarm: k.alarm})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].MemberID != out[j].MemberID {
			return out[i].MemberID < out[j].MemberID
		}
		return out[i].Alarm < out[j].Alarm
	})
	return out
}

// checkWrite refuses a write that would add data while space is exhausted,
// raising NOSPACE when this member is over its quota (etcd's quota KV
// server).
func (a *alarmStore) checkWrite() error {
	if a.active(pb.AlarmType_CORRUPT) {
		return errCorrupt
	}
	if a.active(pb.AlarmType_NOSPACE) {
		return errNoSpace
	}
	q := a.s.cfg.QuotaBackendBytes
	if q > 0 && a.dbSizeBytes.Load() > q {
		a.raise(pb.AlarmType_NOSPACE)
		return errNoSpace
	}
	if a.diskLow.Load() {
		a.raise(pb.AlarmType_NOSPACE)
		return errNoSpace
	}
	return nil
}

// checkRead refuses reads while the cluster is marked corrupt.
func (a *alarmStore) checkRead() error {
	if a.active(pb.AlarmType_CORRUPT) {
		return errCorrupt
	}
	return nil
}

// raise proposes an alarm for this member in the background.
func (a *alarmStore) raise(t pb.AlarmType) {
	if !a.raising.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer a.raising.Store(false)
		ctx, cancel := context.WithTimeout(a.s.ctx, a.s.cfg.RequestTimeout)
		defer cancel()
		_, err := a.s.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
			Action: pb.AlarmRequest_ACTIVATE, MemberID: a.s.memberID, Alarm: t}})
		if err != nil {
			a.s.lg.Warn("raising alarm failed", zap.String("alarm", t.String()), zap.Error(err))
			return
		}
		a.s.lg.Warn("alarm raised", zap.String("alarm", t.String()),
			zap.Int64("db-size-bytes", a.dbSizeBytes.Load()), zap.Int64("quota-bytes", a.s.cfg.QuotaBackendBytes))
	}()
}

// refuse is the apply-time check: while NOSPACE is active, requests that
// add data fail on every member alike (etcd's capped applier); while
// CORRUPT is active, every KV request fails.
func (a *alarmStore) refuse(r *pb.InternalRaftRequest) error {
	if a.active(pb.AlarmType_CORRUPT) && (r.Put != nil || r.DeleteRange != nil || r.Txn != nil || r.Compaction != nil || r.LeaseGrant != nil || r.LeaseRevoke != nil) {
		return errCorrupt
	}
	if a.active(pb.AlarmType_NOSPACE) && (r.Put != nil || r.LeaseGrant != nil || (r.Txn != nil && txnHasPut(r.Txn))) {
		return errNoSpace
	}
	return nil
}

func (a *alarmStore) apply(idx uint64, r *pb.AlarmRequest) result {
	k := alarmKey{member: r.MemberID, alarm: r.Alarm}
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{Revision: a.s.kv.Rev()}}
	switch r.Action {
	case pb.AlarmRequest_GET:
		a.s.ensureApplied(idx)
		resp.Alarms = a.list()
		return result{resp: resp}
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			a.s.ensureApplied(idx)
			return result{resp: resp}
		}
		err := a.s.kv.ApplyMeta(idx, func(b *engine.Batch) error {
			b.Put(engine.CFMeta, alarmMetaKey(k), nil)
			return nil
		})
		if err != nil {
			return result{err: err}
		}
		a.mu.Lock()
		a.mu.alarms[k] = true
		a.mu.Unlock()
		resp.Alarms = []*pb.AlarmMember{{MemberID: k.member, Alarm: k.alarm}}
		return result{resp: resp}
	case pb.AlarmRequest_DEACTIVATE:
		a.mu.Lock()
		was := a.mu.alarms[k]
		a.mu.Unlock()
		if !was {
			a.s.ensureApplied(idx)
			return result{resp: resp}
		}
		err := a.s.kv.ApplyMeta(idx, func(b *engine.Batch) error {
			b.Delete(engine.CFMeta, alarmMetaKey(k))
			return nil
		})
		if err != nil {
			return result{err: err}
		}
		a.mu.Lock()
		delete(a.mu.alarms, k)
		a.mu.Unlock()
		resp.Alarms = []*pb.AlarmMember{{MemberID: k.member, Alarm: k.alarm}}
		return result{resp: resp}
	}
	a.s.ensureApplied(idx)
	return result{resp: resp}
}

// sample reads the engine's size.
func (a *alarmStore) sample() {
	st, err := a.s.db.Stats()
	if err != nil {
		return
	}
	a.dbSizeBytes.Store(int64(st.LiveSSTBytes + st.BlobBytes + st.MemtableBytes))
	a.dbSizeInUseBytes.Store(int64(st.EstimatedLiveDataBytes + st.MemtableBytes))
	a.sampleDisk() // diskspace.go
}

// watchQuota samples the engine's size for the quota and Status.
func (a *alarmStore) watchQuota(ctx context.Context) {
	t := time.NewTicker(quotaCheckInterval)
	defer t.Stop()
	disk := time.NewTicker(diskCheckInterval) // diskspace.go
	defer disk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.sample()
		case <-disk.C:
			a.sampleDisk()
		}
	}
}
