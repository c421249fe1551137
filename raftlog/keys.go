package raftlog

import (
	"encoding/binary"
	"fmt"
)

// Key layout of the raft log in engine.CFRaft. Every key starts with a
// one-byte tag so that each kind is a contiguous range and a DeleteRange
// over one kind never touches another:
//
//	'e' + BE uint64 index -> marshaled raftpb.Entry
//	'h'                   -> marshaled raftpb.HardState
//	's'                   -> marshaled raftpb.Snapshot (metadata; Data as given)
//	't' + BE uint64 index -> BE uint64 term: the log's terms, run-length
//	                          encoded (see terms.go)
//
// Big-endian indexes sort numerically, so an iterator walks entries in log
// order. The 't' runs exist so that Open reads a handful of keys instead of
// decoding every entry of the retained log to learn its terms.
const (
	tagEntry     = 'e'
	tagHardState = 'h'
	tagSnapshot  = 's'
	tagTermRun   = 't'

	indexedKeyLen = 9 // tag + BE uint64
)

var (
	keyHardState = []byte{tagHardState}
	keySnapshot  = []byte{tagSnapshot}
)

func indexedKey(tag byte, index uint64) []byte {
	k := make([]byte, indexedKeyLen)
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

// entryKey returns the key of the entry at index.
func entryKey(index uint64) []byte { return indexedKey(tagEntry, index) }

// termRunKey returns the key of the term run starting at index.
func termRunKey(index uint64) []byte { return indexedKey(tagTermRun, index) }

// tagEnd returns the first key after every key with tag.
func tagEnd(tag byte) []byte { return []byte{tag + 1} }

// decodeIndexedKey returns the index of an 'e' or 't' key.
func decodeIndexedKey(tag byte, k []byte) (uint64, error) {
	if len(k) != indexedKeyLen || k[0] != tag {
		return 0, fmt.Errorf("raftlog: malformed %q key %x", tag, k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}
