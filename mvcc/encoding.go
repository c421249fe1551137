package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// This file holds every on-disk encoding of the package. Decoders are
// strict: they accept exactly the bytes the encoders produce and return
// ErrCorrupt for anything else (never panic), so a fuzzer can check
// decode(encode(x)) == x and encode(decode(b)) == b.

// ErrCorrupt is returned (wrapped) when a stored record does not decode.
var ErrCorrupt = errors.New("mvcc: corrupt record")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// Revision is a point in the store's history: Main is the revision of the
// whole store after a write, Sub orders the changes inside it.
type Revision struct {
	Main, Sub int64
}

// GreaterThan reports whether r is after o.
func (r Revision) GreaterThan(o Revision) bool {
	if r.Main != o.Main {
		return r.Main > o.Main
	}
	return r.Sub > o.Sub
}

// record is the value stored for one version of one key, in CFKV (latest)
// and CFHistory (superseded). Encoding:
//
//	flags    1 byte  bit 0: tombstone; every other bit zero
//	mod.Main uvarint (>= 1)
//	mod.Sub  uvarint
//	create   uvarint (put: 1 <= create <= mod.Main; tombstone: 0)
//	version  uvarint (put: >= 1; tombstone: 0)
//	lease    uvarint of uint64(lease) (tombstone: 0)
//	value    the rest (tombstone: empty)
//
// Every uvarint is minimal. A tombstone is the version written by a
// delete: etcd reports it as a DELETE event and a missing key.
type record struct {
	tombstone bool
	mod       Revision
	create    int64
	version   int64
	lease     int64
	value     []byte
}

const flagTombstone = 1

// maxRecordHeaderBytes bounds the encoded header (flags + five uvarints).
const maxRecordHeaderBytes = 1 + 5*binary.MaxVarintLen64

func appendRecord(dst []byte, r *record) []byte {
	var flags byte
	if r.tombstone {
		flags = flagTombstone
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(r.mod.Main))
	dst = binary.AppendUvarint(dst, uint64(r.mod.Sub))
	dst = binary.AppendUvarint(dst, uint64(r.create))
	dst = binary.AppendUvarint(dst, uint64(r.version))
	dst = binary.AppendUvarint(dst, uint64(r.lease))
	return append(dst, r.value...)
}

func encodeRecord(r *record) []byte {
	return appendRecord(make([]byte, 0, maxRecordHeaderBytes+len(r.value)), r)
}

// uvarint reads a minimal uvarint from b.
func uvarint(b []byte, what string) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, corruptf("bad uvarint for %s", what)
	}
	if n != uvarintLen(v) {
		return 0, 0, corruptf("non-minimal uvarint for %s", what)
	}
	return v, n, nil
}

func uvarintLen(v uint64) int {
	if v == 0 {
		return 1
	}
	return (bits.Len64(v) + 6) / 7
}

// int63 reads a minimal uvarint that must fit a non-negative int64.
func int63(b []byte, what string) (int64, int, error) {
	v, n, err := uvarint(b, what)
	if err != nil {
		return 0, 0, err
	}
	if v > math.MaxInt64 {
		return 0, 0, corruptf("%s %d out of range", what, v)
	}
	return int64(v), n, nil
}

// decodeRecord decodes b. The returned value aliases b.
func decodeRecord(b []byte) (record, error) {
	var r record
	n, err := decodeRecordHeader(b, &r)
	if err != nil {
		return record{}, err
	}
	r.value = b[n:]
	if r.tombstone && len(r.value) != 0 {
		return record{}, corruptf("tombstone with a value")
	}
	return r, nil
}

// decodeRecordHeader decodes everything but the value and returns the
// value's offset; it lets scans skip values they do not return.
func decodeRecordHeader(b []byte, r *record) (int, error) {
	if len(b) == 0 {
		return 0, corruptf("empty record")
	}
	if b[0]&^flagTombstone != 0 {
		return 0, corruptf("unknown record flags %#x", b[0])
	}
	r.tombstone = b[0] == flagTombstone
	off := 1
	var fields [4]int64
	names := [4]string{"mod main", "mod sub", "create revision", "version"}
	for i := range fields {
		v, n, err := int63(b[off:], names[i])
		if err != nil {
			return 0, err
		}
		fields[i] = v
		off += n
	}
	lease, n, err := uvarint(b[off:], "lease")
	if err != nil {
		return 0, err
	}
	off += n
	r.mod = Revision{Main: fields[0], Sub: fields[1]}
	r.create, r.version, r.lease = fields[2], fields[3], int64(lease)
	if r.mod.Main < 1 {
		return 0, corruptf("mod revision %d < 1", r.mod.Main)
	}
	if r.tombstone {
		if r.create != 0 || r.version != 0 || r.lease != 0 {
			return 0, corruptf("tombstone with create %d version %d lease %d", r.create, r.version, r.lease)
		}
	} else if r.create < 1 || r.create > r.mod.Main || r.version < 1 {
		return 0, corruptf("put with create %d mod %d version %d", r.create, r.mod.Main, r.version)
	}
	return off, nil
}

// History keys order a key's versions newest first and keep user-key order
// across keys:
//
//	escape(userkey) 0x00 0x01 bigendian(^uint64(mainRev))
//
// escape maps 0x00 to 0x00 0xFF, so 0x00 0x01 cannot occur inside an
// escaped key and marks its end. Example: key "a" at revisions 3 and 7:
//
//	61 00 01 ff ff ff ff ff ff ff f8   "a"@7
//	61 00 01 ff ff ff ff ff ff ff fc   "a"@3
//	61 00 ff 00 01 ...                 "a\x00"@any sorts after both
const (
	histEscape     = 0xFF
	histTerminator = 0x01
	histRevBytes   = 8
)

func appendEscaped(dst, key []byte) []byte {
	for {
		i := bytes.IndexByte(key, 0)
		if i < 0 {
			dst = append(dst, key...)
			break
		}
		dst = append(dst, key[:i+1]...)
		dst = append(dst, histEscape)
		key = key[i+1:]
	}
	return append(dst, 0, histTerminator)
}

// appendHistoryPrefix appends the prefix shared by every version of key.
func appendHistoryPrefix(dst, key []byte) []byte { return appendEscaped(dst, key) }

func appendHistoryKey(dst, key []byte, main int64) []byte {
	dst = appendEscaped(dst, key)
	return binary.BigEndian.AppendUint64(dst, ^uint64(main))
}

// decodeHistoryKey returns the user key and main revision of a history
// key; the user key is a fresh slice.
func decodeHistoryKey(b []byte) (key []byte, main int64, err error) {
	key = make([]byte, 0, len(b))
	i := 0
	for {
		j := bytes.IndexByte(b[i:], 0)
		if j < 0 || i+j+1 >= len(b) {
			return nil, 0, corruptf("history key without terminator")
		}
		key = append(key, b[i:i+j]...)
		i += j + 1
		switch b[i] {
		case histEscape:
			key = append(key, 0)
			i++
			continue
		case histTerminator:
			i++
		default:
			return nil, 0, corruptf("bad escape byte %#x in history key", b[i])
		}
		break
	}
	if len(b)-i != histRevBytes {
		return nil, 0, corruptf("history key revision has %d bytes", len(b)-i)
	}
	m := ^binary.BigEndian.Uint64(b[i:])
	if m < 1 || m > math.MaxInt64 {
		return nil, 0, corruptf("history key revision %d out of range", m)
	}
	return key, int64(m), nil
}

// Event keys are bigendian(uint64(main revision)); the value lists the
// revision's changes in sub-revision order:
//
//	count uvarint (>= 1)
//	then per change:
//	  flags      1 byte: bit 0 DELETE (else PUT), bit 1 inline record
//	  sub        uvarint, equal to the change's position
//	  superseded uvarint: main revision of the key's version at main-1 if
//	             that was a put, else 0
//	  keylen     uvarint, then the key bytes
//	  [inline]   uvarint length, then the version's record
//
// No values: an event's KV is the record at (key, main) in CFKV or
// CFHistory, its prev KV the record at (key, superseded).
//
// Inline records exist for one etcd corner: a txn may write a key twice in
// one revision when a put and a delete with range end "\x00" (which
// etcd's checkIntervals does not see as overlapping) hit the same key.
// Only the last write is the version at (key, main); the earlier one is
// kept in its event, where the watch feed and HashKV still find it. For
// example, txn {put b=1; delete ["a", "\x00")} at revision 7 stores
// CFKV b = tombstone@7.1 and events@7 = [PUT b inline(put@7.0 "1"),
// DELETE b].
type eventEntry struct {
	del        bool
	sub        int64
	superseded int64
	key        []byte
	inline     []byte // encoded record, or nil
}

const (
	eventFlagDelete = 1 << 0
	eventFlagInline = 1 << 1
)

func appendEventKey(dst []byte, main int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(main))
}

func eventKey(main int64) []byte { return appendEventKey(make([]byte, 0, 8), main) }

func decodeEventKey(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, corruptf("event key has %d bytes", len(b))
	}
	m := binary.BigEndian.Uint64(b)
	if m > math.MaxInt64 {
		return 0, corruptf("event revision %d out of range", m)
	}
	return int64(m), nil
}

func encodeEvents(evs []eventEntry) []byte {
	n := binary.MaxVarintLen64
	for i := range evs {
		n += 1 + 4*binary.MaxVarintLen64 + len(evs[i].key) + len(evs[i].inline)
	}
	return appendEvents(make([]byte, 0, n), evs)
}

func appendEvents(dst []byte, evs []eventEntry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(evs)))
	for i := range evs {
		e := &evs[i]
		var flags byte
		if e.del {
			flags |= eventFlagDelete
		}
		if e.inline != nil {
			flags |= eventFlagInline
		}
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, uint64(e.sub))
		dst = binary.AppendUvarint(dst, uint64(e.superseded))
		dst = binary.AppendUvarint(dst, uint64(len(e.key)))
		dst = append(dst, e.key...)
		if e.inline != nil {
			dst = binary.AppendUvarint(dst, uint64(len(e.inline)))
			dst = append(dst, e.inline...)
		}
	}
	return dst
}

// decodeEvents decodes an event list of revision main. Keys alias b.
func decodeEvents(b []byte, main int64) ([]eventEntry, error) {
	cnt, off, err := uvarint(b, "event count")
	if err != nil {
		return nil, err
	}
	// Each event takes at least 4 bytes, which bounds the allocation.
	if cnt == 0 || cnt > uint64(len(b)-off)/4 {
		return nil, corruptf("event count %d for %d bytes", cnt, len(b))
	}
	evs := make([]eventEntry, cnt)
	for i := range evs {
		e := &evs[i]
		if off >= len(b) {
			return nil, corruptf("truncated event %d", i)
		}
		flags := b[off]
		if flags&^(eventFlagDelete|eventFlagInline) != 0 {
			return nil, corruptf("unknown event flags %#x", flags)
		}
		e.del = flags&eventFlagDelete != 0
		off++
		var n int
		if e.sub, n, err = int63(b[off:], "event sub"); err != nil {
			return nil, err
		}
		off += n
		if e.sub != int64(i) {
			return nil, corruptf("event %d has sub %d", i, e.sub)
		}
		if e.superseded, n, err = int63(b[off:], "superseded revision"); err != nil {
			return nil, err
		}
		off += n
		if e.superseded >= main {
			return nil, corruptf("event at %d supersedes %d", main, e.superseded)
		}
		kl, n, err := uvarint(b[off:], "event key length")
		if err != nil {
			return nil, err
		}
		off += n
		if kl == 0 || kl > uint64(len(b)-off) {
			return nil, corruptf("event key length %d", kl)
		}
		e.key = b[off : off+int(kl)]
		off += int(kl)
		if flags&eventFlagInline != 0 {
			il, n, err := uvarint(b[off:], "inline record length")
			if err != nil {
				return nil, err
			}
			off += n
			if il == 0 || il > uint64(len(b)-off) {
				return nil, corruptf("inline record length %d", il)
			}
			e.inline = b[off : off+int(il)]
			off += int(il)
			rec, err := decodeRecord(e.inline)
			if err != nil {
				return nil, err
			}
			if rec.tombstone != e.del || rec.mod != (Revision{Main: main, Sub: e.sub}) {
				return nil, corruptf("inline record %+v does not match event %d.%d", rec.mod, main, e.sub)
			}
		}
	}
	if off != len(b) {
		return nil, corruptf("%d trailing bytes after events", len(b)-off)
	}
	return evs, nil
}

// Lease column family:
//
//	'l' bigendian(uint64(id))         -> uvarint ttl, uvarint remainingTTL
//	'k' bigendian(uint64(id)) userkey -> empty: key attached to the lease
const (
	leasePrefix  = 'l'
	attachPrefix = 'k'
)

func leaseKey(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{leasePrefix}, uint64(id))
}

func attachKey(id int64, key []byte) []byte {
	b := make([]byte, 0, 9+len(key))
	b = append(b, attachPrefix)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	return append(b, key...)
}

func attachPrefixOf(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{attachPrefix}, uint64(id))
}

func decodeLeaseKey(b []byte) (int64, error) {
	if len(b) != 9 || b[0] != leasePrefix {
		return 0, corruptf("bad lease key %x", b)
	}
	return int64(binary.BigEndian.Uint64(b[1:])), nil
}

func encodeLease(ttl, remaining int64) []byte {
	b := binary.AppendUvarint(nil, uint64(ttl))
	return binary.AppendUvarint(b, uint64(remaining))
}

func decodeLease(b []byte) (ttl, remaining int64, err error) {
	t, n, err := int63(b, "lease ttl")
	if err != nil {
		return 0, 0, err
	}
	r, m, err := int63(b[n:], "lease remaining ttl")
	if err != nil {
		return 0, 0, err
	}
	if n+m != len(b) {
		return 0, 0, corruptf("%d trailing bytes after lease", len(b)-n-m)
	}
	return t, r, nil
}

// Meta keys: mvcc owns the keys under "mvcc/" in CFMeta; every value is an
// 8-byte bigendian integer.
var (
	metaAppliedIndex     = []byte("mvcc/applied_index")
	metaCurrentRev       = []byte("mvcc/current_rev") // read only: see Store.loadRev
	metaCompactScheduled = []byte("mvcc/compact_scheduled")
	metaCompactFinished  = []byte("mvcc/compact_finished")
	metaCompactCursor    = []byte("mvcc/compact_cursor")
)

func encodeU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, corruptf("meta value has %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
