package server

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/failpoint"
	"github.com/metastore/metastore/tuning"
)

type raftSnapshotStatus = raft.SnapshotStatus

var checkpointSeq atomic.Uint64

// checkpoint writes an engine checkpoint under the member directory and
// returns it with a func that removes it.
func (s *Server) checkpoint() (dir string, release func(), err error) {
	base := filepath.Join(memberDir(s.cfg.DataDir), "checkpoints")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", nil, err
	}
	dir = filepath.Join(base, fmt.Sprintf("%d-%d", time.Now().UnixNano(), checkpointSeq.Add(1)))
	if err := s.db.Checkpoint(dir); err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

func checkpointSize(dir string) (int64, error) {
	var total int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return err
	})
	return total, err
}

// writeCheckpointTar writes the files of a checkpoint directory as a tar
// stream, reading each file in bounded chunks.
func writeCheckpointTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o600, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// snapshotSource hands the transport a checkpoint to stream for a MsgSnap.
type snapshotSource struct{ s *Server }

func (src snapshotSource) OpenSnapshot(m raftpb.Message) (string, func(), error) {
	return src.s.checkpoint()
}

// snapshotSink records where a received snapshot was staged, for
// RestoreSnapshot to install.
type snapshotSink struct{ s *Server }

func (sink snapshotSink) SnapshotReceived(m raftpb.Message, dir string) error {
	sink.s.lg.Info("received snapshot", zap.Uint64("index", m.Snapshot.Metadata.Index), zap.String("dir", dir))
	sink.s.stagedSnapshot.Store(&stagedSnapshot{index: m.Snapshot.Metadata.Index, term: m.Snapshot.Metadata.Term, dir: dir})
	return nil
}

type stagedSnapshot struct {
	index, term uint64
	dir         string
}

// copyBatchBytes bounds one write batch of a snapshot install.
const copyBatchBytes = 4 << 20

// restoredCFs are the column families a snapshot replaces. The raft family
// stays: it is this member's own log and hard state.
var restoredCFs = []engine.CF{engine.CFKV, engine.CFHistory, engine.CFEvents, engine.CFLease, engine.CFMeta}

// RestoreSnapshot installs the staged snapshot the transport received for
// snap: the replicated column families are replaced by the checkpoint's,
// then the store reloads its state from them. Raft's own state is
// untouched. The install is made crash-safe by a marker written before it
// starts and removed after it ends: a member that restarts with the marker
// set redoes the install from the staged directory before anything else.
func (a *applier) RestoreSnapshot(snap raftpb.Snapshot) error {
	s := (*Server)(a)
	st := s.stagedSnapshot.Load()
	if st == nil || st.index != snap.Metadata.Index {
		return fmt.Errorf("server: no staged snapshot for index %d", snap.Metadata.Index)
	}
	start := time.Now()
	b := s.db.NewBatch()
	b.Put(engine.CFMeta, []byte(metaRestoringKey), []byte(st.dir))
	if err := s.db.Write(b, true); err != nil {
		return err
	}
	if err := s.kv.Restore(func() error { return installSnapshotDir(s.db, st.dir) }); err != nil {
		return fmt.Errorf("server: install snapshot: %w", err)
	}
	// The leader took the checkpoint after applying everything up to the
	// snapshot's index, but the index of trailing entries that changed
	// nothing (a new leader's empty entry, a refused request) is persisted
	// lazily, so the checkpoint may say less. Raft resumes after the
	// snapshot's index: record it, or the next entry would look like a gap.
	if idx := snap.Metadata.Index; s.kv.AppliedIndex() < idx {
		if err := s.kv.ApplyMeta(idx, func(*engine.Batch) error { return nil }); err != nil {
			return fmt.Errorf("server: record snapshot index %d as applied: %w", idx, err)
		}
	}
	if err := s.finishRestore(st.dir); err != nil {
		return err
	}
	s.lg.Info("installed snapshot", zap.Uint64("index", snap.Metadata.Index),
		zap.Uint64("applied-index", s.kv.AppliedIndex()), zap.Int64("revision", s.kv.Rev()), zap.Duration("took", time.Since(start)))
	return nil
}

// metaRestoringKey is set while a snapshot install is in progress.
const metaRestoringKey = "local/restoring-snapshot"

// resumeRestore redoes an install a crash interrupted. It runs at start,
// before the store is opened.
func resumeRestore(db *engine.DB) (string, error) {
	dir, found, err := db.Get(engine.CFMeta, []byte(metaRestoringKey))
	if err != nil || !found {
		return "", err
	}
	if _, err := os.Stat(string(dir)); err != nil {
		return "", fmt.Errorf("server: a snapshot install was interrupted and its staged copy %s is gone: %w", dir, err)
	}
	return string(dir), installSnapshotDir(db, string(dir))
}

// finishRestore reloads membership and alarms from the installed state,
// clears the marker and removes the staged copy.
func (s *Server) finishRestore(dir string) error {
	s.applied.Store(s.kv.AppliedIndex())
	s.cluster.reset()
	if err := s.loadMembers(); err != nil {
		return err
	}
	for _, m := range s.cluster.Members() {
		if m.ID != s.memberID && s.tr != nil {
			s.tr.AddPeer(m.ID, m.PeerURLs)
		}
	}
	if err := s.alarms.load(); err != nil {
		return err
	}
	if s.lessor != nil {
		s.lessor.reset()
	}
	// The snapshot replaced the users, roles and permissions too.
	if s.authStore != nil {
		if err := s.authStore.Recover(authBackend{s.db}); err != nil {
			return err
		}
	}
	b := s.db.NewBatch()
	b.Delete(engine.CFMeta, []byte(metaRestoringKey))
	if err := s.db.Write(b, true); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// installSnapshotDir replaces the replicated column families of db with
// those of the checkpoint in dir.
func installSnapshotDir(db *engine.DB, dir string) error {
	src, err := engine.Open(dir, tuning.LowMemory())
	if err != nil {
		return fmt.Errorf("open received snapshot: %w", err)
	}
	defer src.Close()
	for i, cf := range restoredCFs {
		if failpoint.Enabled && i == 1 {
			// Mid-install: some column families replaced, the restoring
			// marker set; a restart must redo the install.
			if err := failpoint.Inject(failpoint.SnapshotInstallMid); err != nil {
				return err
			}
		}
		if err := replaceCF(db, src, cf); err != nil {
			return err
		}
	}
	return nil
}

// localMetaPrefix marks the meta keys that describe this member rather than
// the replicated state; a snapshot never overwrites them.
const localMetaPrefix = "local/"

// replaceCF makes cf of dst equal to cf of src, in bounded batches. It is
// not atomic; the restoring marker makes the whole install redo-able.
func replaceCF(dst, src *engine.DB, cf engine.CF) error {
	// Delete what dst has, key by key (keys are unbounded, so no single
	// range tombstone covers them all), keeping this member's own keys.
	notLocal := func(k []byte) bool { return cf != engine.CFMeta || !bytes.HasPrefix(k, []byte(localMetaPrefix)) }
	if err := deleteAll(dst, cf, notLocal); err != nil {
		return err
	}
	b := dst.NewBatch()
	flush := func() error {
		if b.Empty() {
			return nil
		}
		err := dst.Write(b, false)
		b.Reset()
		return err
	}
	sit, err := src.NewIterator(cf, engine.IterOptions{NoFillCache: true})
	if err != nil {
		return err
	}
	defer sit.Close()
	for ok := sit.First(); ok; ok = sit.Next() {
		if !notLocal(sit.Key()) {
			continue
		}
		b.Put(cf, sit.Key(), sit.Value())
		if b.Len() >= copyBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sit.Error(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	return dst.SyncWAL()
}
