package raftlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/metastore/metastore/engine"
)

// The raft log's persisted records are fuzzed two ways: the key decoders
// alone, and Open over arbitrary log records, which decodes every kind of
// record (hard state, snapshot metadata, term runs, entries) and migrates
// the layout before the entries had their column family alone. Seeds
// run in plain `go test`; `go test -fuzz FuzzX` explores.

func FuzzDecodeIndexedKey(f *testing.F) {
	f.Add(byte(tagEntry), entryKey(7))
	f.Add(byte('t'), termRunKey(1<<63))
	f.Add(byte(tagEntry), termRunKey(3))
	f.Add(byte(tagEntry), []byte{tagEntry, 1})
	f.Fuzz(func(t *testing.T, tag byte, k []byte) {
		// tag picks the decoder: an entry key, or else a term run key.
		decode, encode := decodeTermRunKey, termRunKey
		if tag == tagEntry {
			decode, encode = decodeEntryKey, entryKey
		}
		idx, err := decode(k)
		if err != nil {
			return
		}
		if got := encode(idx); !bytes.Equal(got, k) {
			t.Fatalf("decoded %x as %d, re-encoded as %x", k, idx, got)
		}
	})
}

// encodeRaftCF packs key/value pairs as the fuzz input of FuzzOpenStorage:
// uvarint key length, key, uvarint value length, value, repeated.
func encodeRaftCF(kvs [][2][]byte) []byte {
	var b []byte
	for _, kv := range kvs {
		b = binary.AppendUvarint(b, uint64(len(kv[0])))
		b = append(b, kv[0]...)
		b = binary.AppendUvarint(b, uint64(len(kv[1])))
		b = append(b, kv[1]...)
	}
	return b
}

// decodeRaftCF is encodeRaftCF's inverse; a truncated tail is dropped.
func decodeRaftCF(b []byte) [][2][]byte {
	var kvs [][2][]byte
	next := func() ([]byte, bool) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return nil, false
		}
		v := b[w : w+int(n)]
		b = b[w+int(n):]
		return v, true
	}
	for len(b) > 0 {
		k, ok := next()
		if !ok {
			break
		}
		v, ok := next()
		if !ok {
			break
		}
		kvs = append(kvs, [2][]byte{k, v})
	}
	return kvs
}

// raftCF returns every key/value the log keeps: the entries' column family
// and the log's records in the state family.
func raftCF(t testing.TB, db *engine.DB) [][2][]byte {
	var kvs [][2][]byte
	for _, cf := range []engine.CF{cfEntries, cfState} {
		it, err := db.NewIterator(cf, engine.IterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			kvs = append(kvs, [2][]byte{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return kvs
}

// logCF is the column family a fuzzed record goes to: the state family for
// keys of its prefix, the entries' family for everything else (so inputs
// in the layout before the split, with 'h', 's' and 't' records among the
// entries, exercise Open's migration).
func logCF(k []byte) engine.CF {
	if bytes.HasPrefix(k, []byte(statePrefix)) {
		return cfState
	}
	return cfEntries
}

// FuzzOpenStorage writes arbitrary records into the raft column family and
// opens it: Open either fails with ErrCorruptLog or yields a log whose
// bounds, terms and end entries agree with each other. It never panics.
func FuzzOpenStorage(f *testing.F) {
	// Seeds: real logs written by Storage itself.
	seedDB := openTestEngine(f, f.TempDir())
	st, err := Open(seedDB, StorageConfig{})
	if err != nil {
		f.Fatal(err)
	}
	ents := []raftpb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1, Data: []byte("a")}, {Index: 3, Term: 2, Data: []byte("bb")}, {Index: 4, Term: 3}}
	if err := st.Save(raftpb.HardState{Term: 3, Vote: 1, Commit: 3}, ents, raftpb.Snapshot{}); err != nil {
		f.Fatal(err)
	}
	f.Add(encodeRaftCF(raftCF(f, seedDB)))
	if err := st.Compact(2); err != nil {
		f.Fatal(err)
	}
	f.Add(encodeRaftCF(raftCF(f, seedDB)))
	if err := st.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 10, Term: 4,
		ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}); err != nil {
		f.Fatal(err)
	}
	f.Add(encodeRaftCF(raftCF(f, seedDB)))
	seedDB.Close()
	f.Add(encodeRaftCF([][2][]byte{{termRunKey(0), make([]byte, 8)}, {entryKey(1), []byte{0x10, 1, 0x18, 1}}}))

	db := openTestEngine(f, f.TempDir())
	f.Cleanup(func() { db.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		b := db.NewBatch()
		for _, kv := range raftCF(t, db) { // what the last input and Open left
			b.Delete(logCF(kv[0]), kv[0])
		}
		for _, kv := range decodeRaftCF(in) {
			b.Put(logCF(kv[0]), kv[0], kv[1])
		}
		if err := db.Write(b, false); err != nil {
			t.Fatal(err)
		}
		s, err := Open(db, StorageConfig{})
		if err != nil {
			if !errors.Is(err, ErrCorruptLog) {
				t.Fatalf("Open failed with %v, not ErrCorruptLog", err)
			}
			return
		}
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first > last+1 {
			t.Fatalf("first index %d > last index %d + 1", first, last)
		}
		s.InitialState()
		for _, i := range []uint64{first - 1, last} {
			if _, err := s.Term(i); err != nil {
				t.Fatalf("Term(%d) in [%d, %d]: %v", i, first-1, last, err)
			}
		}
		if last < first {
			return
		}
		for _, i := range []uint64{first, last} {
			es, err := s.Entries(i, i+1, 1<<20)
			if err != nil || len(es) != 1 || es[0].Index != i {
				t.Fatalf("Entries(%d, %d) = %v, %v", i, i+1, es, err)
			}
			if term, _ := s.Term(i); es[0].Term != term {
				t.Fatalf("entry %d has term %d, Term says %d", i, es[0].Term, term)
			}
		}
	})
}
