package raftlog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/metastore/metastore/engine"
)

// Key layout of the raft log. The entries have engine.CFRaft to
// themselves, so that every SST file of that family holds a run of
// entries and nothing else: once the log is truncated past a file, the
// file is dropped whole (Storage.DropTruncatedFiles) instead of waiting for
// a compaction to rewrite it. The small records that change with every
// Ready live in engine.CFMeta, under a prefix of their own:
//
//	CFRaft: 'e' + BE uint64 index       -> marshaled raftpb.Entry
//	CFMeta: "raftlog/h"                 -> marshaled raftpb.HardState
//	CFMeta: "raftlog/s"                 -> marshaled raftpb.Snapshot (metadata; Data as given)
//	CFMeta: "raftlog/t" + BE uint64 index -> BE uint64 term: the log's terms,
//	                                       run-length encoded (see terms.go)
//
// Big-endian indexes sort numerically, so an iterator walks entries in log
// order. The term runs exist so that Open reads a handful of keys instead
// of decoding every entry of the retained log to learn its terms. Logs
// written before the split kept all four kinds in CFRaft under the tags
// 'e', 'h', 's' and 't'; Open moves the last three (migrateLegacyLayout).
const (
	tagEntry = 'e'

	entryKeyLen = 9 // tag + BE uint64

	cfEntries = engine.CFRaft
	cfState   = engine.CFMeta
)

var (
	statePrefix   = "raftlog/"
	keyHardState  = []byte(statePrefix + "h")
	keySnapshot   = []byte(statePrefix + "s")
	termRunsStart = []byte(statePrefix + "t")
	termRunsEnd   = []byte(statePrefix + "u")
	entriesStart  = []byte{tagEntry}
	entriesEnd    = []byte{tagEntry + 1}
)

// entryKey returns the key of the entry at index.
func entryKey(index uint64) []byte {
	k := make([]byte, entryKeyLen)
	k[0] = tagEntry
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

// termRunKey returns the key of the term run starting at index.
func termRunKey(index uint64) []byte {
	k := make([]byte, len(termRunsStart)+8)
	copy(k, termRunsStart)
	binary.BigEndian.PutUint64(k[len(termRunsStart):], index)
	return k
}

// decodeEntryKey returns the index of an entry key.
func decodeEntryKey(k []byte) (uint64, error) {
	if len(k) != entryKeyLen || k[0] != tagEntry {
		return 0, fmt.Errorf("raftlog: malformed entry key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// decodeTermRunKey returns the first index of a term run key.
func decodeTermRunKey(k []byte) (uint64, error) {
	if len(k) != len(termRunsStart)+8 || !bytes.HasPrefix(k, termRunsStart) {
		return 0, fmt.Errorf("raftlog: malformed term run key %x", k)
	}
	return binary.BigEndian.Uint64(k[len(termRunsStart):]), nil
}
