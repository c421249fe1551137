package engine

import "encoding/binary"

// Batch collects writes to apply atomically with DB.Write. It is built in Go
// memory in RocksDB's own WriteBatch encoding and handed to RocksDB in one
// call, so queuing a write costs no cgo transition. A Batch belongs to one
// goroutine; after Write it may be Reset and reused.
//
// Batch does not retain the key and value slices passed to it: they are
// copied into the batch.
type Batch struct {
	db    *DB
	rep   []byte
	count uint32
}

// Record tags of RocksDB's WriteBatch encoding (db/dbformat.h).
const (
	tagCFDeletion      = 0x4
	tagCFValue         = 0x5
	tagCFRangeDeletion = 0xE
	batchHeaderLen     = 12 // fixed64 sequence + fixed32 count
)

// NewBatch returns an empty batch for this database.
func (d *DB) NewBatch() *Batch {
	b := &Batch{db: d}
	b.Reset()
	return b
}

// maxRetainedBatchBytes bounds the buffer Reset keeps: a batch reused
// after one large write does not hold that write's size forever.
const maxRetainedBatchBytes = 1 << 20

// Reset empties the batch, keeping its buffer unless it grew past
// maxRetainedBatchBytes.
func (b *Batch) Reset() {
	if cap(b.rep) < batchHeaderLen || cap(b.rep) > maxRetainedBatchBytes {
		b.rep = make([]byte, batchHeaderLen, 1024)
	}
	b.rep = b.rep[:batchHeaderLen]
	clear(b.rep)
	b.count = 0
}

// BatchMark is a point in a batch to roll back to.
type BatchMark struct {
	len   int
	count uint32
}

// Mark returns the batch's current end, for RollbackTo.
func (b *Batch) Mark() BatchMark { return BatchMark{len: len(b.rep), count: b.count} }

// RollbackTo drops every write added after m was taken.
func (b *Batch) RollbackTo(m BatchMark) {
	b.rep = b.rep[:m.len]
	b.count = m.count
}

// Count returns the number of writes in the batch.
func (b *Batch) Count() int { return int(b.count) }

// Len returns the size of the batch's encoding in bytes.
func (b *Batch) Len() int { return len(b.rep) }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.count == 0 }

// Put sets key to value in cf.
func (b *Batch) Put(cf CF, key, value []byte) {
	b.record(tagCFValue, cf)
	b.appendString(key)
	b.appendString(value)
}

// Delete removes key from cf.
func (b *Batch) Delete(cf CF, key []byte) {
	b.record(tagCFDeletion, cf)
	b.appendString(key)
}

// DeleteRange removes every key of cf in [start, end) with one range
// tombstone, whatever the number of keys.
func (b *Batch) DeleteRange(cf CF, start, end []byte) {
	b.record(tagCFRangeDeletion, cf)
	b.appendString(start)
	b.appendString(end)
}

func (b *Batch) record(tag byte, cf CF) {
	b.rep = append(b.rep, tag)
	b.rep = binary.AppendUvarint(b.rep, uint64(b.db.cfIDs[cf]))
	b.count++
}

func (b *Batch) appendString(s []byte) {
	b.rep = binary.AppendUvarint(b.rep, uint64(len(s)))
	b.rep = append(b.rep, s...)
}

// finish stores the count in the header and returns the encoding, which
// RocksDB copies when it is written.
func (b *Batch) finish() []byte {
	binary.LittleEndian.PutUint32(b.rep[8:12], b.count)
	return b.rep
}
