package server

import (
	"bytes"
	"fmt"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/tuning"
)

// clusterMetaPrefixes are the meta keys that describe a cluster rather than
// its data: a restored snapshot drops them, and the member bootstraps a new
// cluster identity from its flags.
var clusterMetaPrefixes = []string{localMetaPrefix, metaMemberPrefix, metaRemovedPrefix, "cluster/", metaAlarmPrefix}

// PrepareRestoredEngine turns an engine unpacked from a snapshot file into
// the engine of a new cluster's first member: the raft log and every record
// of the old cluster's identity, membership and alarms are dropped and the
// applied index is reset, keeping the key-value state, its revisions and
// compaction state, and the leases. Starting the member with
// --initial-cluster-state new then bootstraps a fresh cluster on that data,
// as etcdutl snapshot restore does.
func PrepareRestoredEngine(dir string, o tuning.Options) error {
	db, err := engine.Open(dir, o)
	if err != nil {
		return fmt.Errorf("open restored engine: %w", err)
	}
	defer db.Close()
	if err := deleteAll(db, engine.CFRaft, nil); err != nil {
		return err
	}
	if err := deleteAll(db, engine.CFMeta, func(k []byte) bool {
		for _, p := range clusterMetaPrefixes {
			if bytes.HasPrefix(k, []byte(p)) {
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	if err := mvcc.ResetAppliedIndex(db); err != nil {
		return err
	}
	return db.SyncWAL()
}

// deleteAll deletes the keys of cf that match (all of them when match is
// nil), in bounded batches.
func deleteAll(db *engine.DB, cf engine.CF, match func([]byte) bool) error {
	it, err := db.NewIterator(cf, engine.IterOptions{NoFillCache: true})
	if err != nil {
		return err
	}
	defer it.Close()
	b := db.NewBatch()
	for ok := it.First(); ok; ok = it.Next() {
		if match != nil && !match(it.Key()) {
			continue
		}
		b.Delete(cf, it.Key())
		if b.Len() >= copyBatchBytes {
			if err := db.Write(b, false); err != nil {
				return err
			}
			b.Reset()
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return db.Write(b, true)
}
