package mvcc

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/metastore/metastore/engine"
)

// The C side of counting (engine.CountRun with recordHeaderRule) must
// classify every CFKV value exactly as decodeRecordHeader and
// liveAtHeader's revision check do, and must report every value
// decodeRecordHeader rejects as malformed, never count it. These tests
// fail when encoding.go's record header changes and recordHeaderRule does
// not follow.

// goClass is the classification by the Go decoder.
func goClass(value []byte, rev int64) engine.HeaderClass {
	var h record
	if _, err := decodeRecordHeader(value, &h); err != nil {
		return engine.HeaderMalformed
	}
	switch {
	case h.mod.Main > rev:
		return engine.HeaderNewer
	case h.tombstone:
		return engine.HeaderDead
	default:
		return engine.HeaderLive
	}
}

func checkClass(t *testing.T, what string, value []byte, rev int64) {
	t.Helper()
	if got, want := recordHeaderRule.Classify(value, rev), goClass(value, rev); got != want {
		t.Fatalf("%s: value %x at rev %d: C says %v, decodeRecordHeader %v", what, value, rev, got, want)
	}
}

// TestCountHeaderFields pins the field numbering of recordHeaderRule to
// appendRecord: mod main first, then exactly hdrFields uvarints before
// the value.
func TestCountHeaderFields(t *testing.T) {
	if hdrModMain != 0 {
		t.Fatalf("hdrModMain = %d: engine.HeaderRule compares field 0 with the read revision", hdrModMain)
	}
	rec := record{mod: Revision{Main: 1001, Sub: 1002}, create: 1000, version: 1003, lease: 1004, value: []byte("v")}
	b := encodeRecord(&rec)
	want := map[int]uint64{hdrModMain: 1001, hdrModSub: 1002, hdrCreate: 1000, hdrVersion: 1003, hdrLease: 1004}
	off := 1
	for i := 0; i < hdrFields; i++ {
		v, n := binary.Uvarint(b[off:])
		if n <= 0 || v != want[i] {
			t.Fatalf("field %d: %d (n %d), want %d", i, v, n, want[i])
		}
		off += n
	}
	if string(b[off:]) != "v" {
		t.Fatalf("after %d fields: %q, want the value", hdrFields, b[off:])
	}
}

// countHeaderRecords are well-formed records around the uvarint length
// boundaries and the field checks.
func countHeaderRecords() []record {
	var recs []record
	for _, main := range []int64{1, 2, 1<<7 - 1, 1 << 7, 1<<14 - 1, 1 << 14, 1 << 21, 1<<35 - 1, 1 << 35, 1 << 56, 1<<63 - 1} {
		recs = append(recs,
			record{mod: Revision{Main: main}, create: main, version: 1, value: []byte("x")},
			record{mod: Revision{Main: main, Sub: 7}, create: 1, version: math.MaxInt64, lease: -1},
			record{mod: Revision{Main: main, Sub: math.MaxInt64}, create: max(main/2, 1), version: 1 << 14, lease: 1 << 35, value: make([]byte, 300)},
			record{tombstone: true, mod: Revision{Main: main}},
			record{tombstone: true, mod: Revision{Main: main, Sub: 1 << 7}},
		)
	}
	return recs
}

// TestCountHeaderRule compares the C classification with the Go decoder
// on well-formed records at revisions around theirs, on every truncation
// of them, on every single-bit flip of their headers, and on hand-made
// malformed values.
func TestCountHeaderRule(t *testing.T) {
	for _, rec := range countHeaderRecords() {
		b := encodeRecord(&rec)
		for _, rev := range []int64{0, rec.mod.Main - 1, rec.mod.Main, min(rec.mod.Main, math.MaxInt64-1) + 1, math.MaxInt64} {
			want := engine.HeaderLive
			switch {
			case rec.mod.Main > rev:
				want = engine.HeaderNewer
			case rec.tombstone:
				want = engine.HeaderDead
			}
			if got := recordHeaderRule.Classify(b, rev); got != want {
				t.Fatalf("%+v at rev %d: %v, want %v", rec, rev, got, want)
			}
		}
		var h record
		hdrLen, err := decodeRecordHeader(b, &h)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < hdrLen; n++ {
			if got := recordHeaderRule.Classify(b[:n], math.MaxInt64); got != engine.HeaderMalformed {
				t.Fatalf("%+v cut to %d bytes: %v, want malformed", rec, n, got)
			}
		}
		for i := 0; i < hdrLen; i++ {
			for bit := 0; bit < 8; bit++ {
				m := append([]byte(nil), b...)
				m[i] ^= 1 << bit
				checkClass(t, "bit flip", m, rec.mod.Main)
				checkClass(t, "bit flip", m, math.MaxInt64)
			}
		}
	}
	malformed := []struct {
		name  string
		value []byte
	}{
		{"empty", nil},
		{"flags only", []byte{0}},
		{"tombstone flags only", []byte{flagTombstone}},
		{"unknown flag", []byte{2, 5, 0, 5, 1, 0}},
		{"mod main 0", []byte{0, 0, 0, 1, 1, 0}},
		{"mod main 2^63", append(binary.AppendUvarint([]byte{0}, 1<<63), 0, 1, 1, 0)},
		{"mod main not minimal", []byte{0, 0x85, 0x00, 0, 5, 1, 0}},
		{"mod main 11 bytes", []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1, 1, 0}},
		{"mod sub 2^63", append(binary.AppendUvarint([]byte{0, 5}, 1<<63), 5, 1, 0)},
		{"put create 0", []byte{0, 5, 0, 0, 1, 0}},
		{"put create above mod", []byte{0, 5, 0, 6, 1, 0}},
		{"put version 0", []byte{0, 5, 0, 5, 0, 0}},
		{"put lease cut", []byte{0, 5, 0, 5, 1}},
		{"put lease unterminated", []byte{0, 5, 0, 5, 1, 0x80}},
		{"tombstone with create", []byte{flagTombstone, 5, 0, 1, 0, 0}},
		{"tombstone with version", []byte{flagTombstone, 5, 0, 0, 1, 0}},
		{"tombstone with lease", []byte{flagTombstone, 5, 0, 0, 0, 7}},
	}
	for _, tt := range malformed {
		for _, rev := range []int64{1, 5, math.MaxInt64} {
			if got := recordHeaderRule.Classify(tt.value, rev); got != engine.HeaderMalformed {
				t.Errorf("%s (%x) at rev %d: %v, want malformed", tt.name, tt.value, rev, got)
			}
			checkClass(t, tt.name, tt.value, rev)
		}
	}
}

// FuzzCountHeaderRule: on any bytes and revision, the C classification
// agrees with the Go decoder.
func FuzzCountHeaderRule(f *testing.F) {
	for _, rec := range countHeaderRecords() {
		f.Add(encodeRecord(&rec), rec.mod.Main)
		f.Add(encodeRecord(&rec), rec.mod.Main-1)
	}
	f.Add([]byte{}, int64(1))
	f.Add([]byte{0, 0x85, 0x00, 0, 5, 1, 0}, int64(10))
	f.Fuzz(func(t *testing.T, value []byte, rev int64) {
		checkClass(t, "fuzz", value, rev)
	})
}
