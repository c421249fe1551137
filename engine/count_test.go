package engine

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// testRule is a three-field header: revision, a signed field that is >= 1
// and <= the revision in a live version and 0 in a dead one, and an
// unsigned field with no checks.
var testRule = HeaderRule{
	DeadFlag:            0x80,
	Fields:              3,
	Int63Fields:         1 << 1,
	DeadZeroFields:      1 << 1,
	LiveNonZeroFields:   1 << 1,
	LiveAtMostRevFields: 1 << 1,
}

// hdr encodes a header of testRule's shape: flags then minimal uvarints.
func hdr(flags byte, fields ...uint64) []byte {
	b := []byte{flags}
	for _, f := range fields {
		b = binary.AppendUvarint(b, f)
	}
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestHeaderRuleClassify(t *testing.T) {
	const dead = 0x80
	tests := []struct {
		name  string
		value []byte
		rev   int64
		want  HeaderClass
	}{
		{"live", hdr(0, 5, 1, 9), 10, HeaderLive},
		{"live at its own revision", hdr(0, 5, 5, 0), 5, HeaderLive},
		{"live with a value after the header", cat(hdr(0, 5, 1, 9), []byte("value")), 10, HeaderLive},
		{"dead", hdr(dead, 5, 0, 0), 10, HeaderDead},
		{"newer", hdr(0, 11, 1, 0), 10, HeaderNewer},
		{"dead and newer", hdr(dead, 11, 0, 0), 10, HeaderNewer},
		{"newer than a negative read revision", hdr(0, 1, 1, 0), -1, HeaderNewer},
		{"revision 2^7", hdr(0, 1<<7, 1, 0), 1 << 7, HeaderLive},
		{"revision 2^14 newer", hdr(0, 1<<14, 1, 0), 1<<14 - 1, HeaderNewer},
		{"revision 2^35", hdr(0, 1<<35, 1, 0), 1 << 35, HeaderLive},
		{"revision 2^63-1", hdr(0, math.MaxInt64, 1, 0), math.MaxInt64, HeaderLive},
		{"unchecked field 2^64-1", hdr(0, 5, 1, math.MaxUint64), 5, HeaderLive},

		{"empty", nil, 10, HeaderMalformed},
		{"flags only", []byte{0}, 10, HeaderMalformed},
		{"short by one field", hdr(0, 5, 1), 10, HeaderMalformed},
		{"truncated uvarint", hdr(0, 1<<14, 1, 0)[:2], 1 << 20, HeaderMalformed},
		{"unknown flags", hdr(0x01, 5, 1, 0), 10, HeaderMalformed},
		{"dead flag plus another", hdr(0x81, 5, 0, 0), 10, HeaderMalformed},
		{"revision 0", hdr(0, 0, 0, 0), 10, HeaderMalformed},
		{"revision 2^63", hdr(0, 1<<63, 1, 0), math.MaxInt64, HeaderMalformed},
		{"non-minimal revision", []byte{0, 0x85, 0x00, 1, 0}, 10, HeaderMalformed},
		{"non-minimal zero field", []byte{0, 5, 1, 0x80, 0x00}, 10, HeaderMalformed},
		{"11-byte uvarint", cat([]byte{0}, []byte(strings.Repeat("\xff", 10)), []byte{1, 1, 0}), 10, HeaderMalformed},
		{"10th uvarint byte 2", cat([]byte{0}, []byte(strings.Repeat("\xff", 9)), []byte{2, 1, 0}), 10, HeaderMalformed},
		{"signed field 2^63", hdr(0, math.MaxInt64, 1<<63, 0), math.MaxInt64, HeaderMalformed},
		{"dead with a non-zero field", hdr(dead, 5, 1, 0), 10, HeaderMalformed},
		{"live with a zero field", hdr(0, 5, 0, 0), 10, HeaderMalformed},
		{"live with a field above the revision", hdr(0, 5, 6, 0), 10, HeaderMalformed},
		// Malformed wins over newer: the caller reads it as one either way.
		{"newer and malformed", hdr(0, 11, 12, 0), 10, HeaderMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testRule.Classify(tt.value, tt.rev); got != tt.want {
				t.Fatalf("Classify(%x, %d) = %v, want %v", tt.value, tt.rev, got, tt.want)
			}
		})
	}
}

func TestHeaderRuleValidate(t *testing.T) {
	tests := []struct {
		rule HeaderRule
		ok   bool
	}{
		{testRule, true},
		{HeaderRule{DeadFlag: 1, Fields: 1}, true},
		{HeaderRule{DeadFlag: 1, Fields: MaxHeaderFields, Int63Fields: 1<<MaxHeaderFields - 1}, true},
		{HeaderRule{DeadFlag: 0, Fields: 1}, false},
		{HeaderRule{DeadFlag: 1, Fields: 0}, false},
		{HeaderRule{DeadFlag: 1, Fields: MaxHeaderFields + 1}, false},
		{HeaderRule{DeadFlag: 1, Fields: 2, DeadZeroFields: 1 << 2}, false},
		{HeaderRule{DeadFlag: 1, Fields: 2, LiveAtMostRevFields: 1 << 3}, false},
	}
	for i, tt := range tests {
		if err := tt.rule.Validate(); (err == nil) != tt.ok {
			t.Errorf("%d: %+v: Validate() = %v, want ok %v", i, tt.rule, err, tt.ok)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Classify with an invalid rule did not panic")
		}
	}()
	(&HeaderRule{}).Classify(hdr(0, 1), 1)
}

// countDB returns a database whose CFKV holds n keys, fmt.Sprintf(keyFmt,
// i) = value(i), closed when the test ends.
func countDB(t *testing.T, n int, keyFmt string, value func(i int) []byte) *DB {
	db := openTest(t, t.TempDir())
	t.Cleanup(func() { db.Close() })
	b := db.NewBatch()
	for i := 0; i < n; i++ {
		b.Put(CFKV, []byte(fmt.Sprintf(keyFmt, i)), value(i))
	}
	if err := db.Write(b, false); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestCountRun walks k00..k19 at revision 10, where k03 and k07 are dead,
// k10 was changed at revision 50 and k15 is malformed.
func TestCountRun(t *testing.T) {
	db := countDB(t, 20, "k%02d", func(i int) []byte {
		switch i {
		case 3, 7:
			return hdr(0x80, 6, 0, 0)
		case 10:
			return hdr(0, 50, 1, 0)
		case 15:
			return []byte{0}
		}
		return cat(hdr(0, 5, 1, 7), []byte("value"))
	})
	tests := []struct {
		name         string
		from, upper  string
		stop         []byte
		rev          int64
		maxKeys      int
		live, keys   int
		stopReason   RunStop
		at           string // "" when the iterator ends invalid
		flushedFirst bool
	}{
		{name: "to a newer key", from: "k00", rev: 10, maxKeys: 1024, live: 8, keys: 10, stopReason: RunNewer, at: "k10"},
		{name: "newer at the read revision is live", from: "k08", rev: 50, maxKeys: 1024, live: 7, keys: 7, stopReason: RunMalformed, at: "k15"},
		{name: "on a newer key", from: "k10", rev: 10, maxKeys: 1024, stopReason: RunNewer, at: "k10"},
		{name: "to a malformed key", from: "k11", rev: 10, maxKeys: 1024, live: 4, keys: 4, stopReason: RunMalformed, at: "k15"},
		{name: "to the end", from: "k16", rev: 10, maxKeys: 1024, live: 4, keys: 4, stopReason: RunExhausted},
		{name: "max keys", from: "k00", rev: 10, maxKeys: 5, live: 4, keys: 5, stopReason: RunMaxKeys, at: "k05"},
		{name: "max keys at the end", from: "k16", rev: 10, maxKeys: 4, live: 4, keys: 4, stopReason: RunExhausted},
		{name: "max keys 0", from: "k00", rev: 10, maxKeys: 0, stopReason: RunMaxKeys, at: "k00"},
		{name: "negative max keys", from: "k00", rev: 10, maxKeys: -1, stopReason: RunMaxKeys, at: "k00"},
		{name: "upper bound", from: "k00", upper: "k05", rev: 10, maxKeys: 1024, live: 4, keys: 5, stopReason: RunExhausted},
		{name: "stop key", from: "k00", stop: []byte("k05"), rev: 10, maxKeys: 1024, live: 4, keys: 5, stopReason: RunStopKey, at: "k05"},
		{name: "stop key between keys", from: "k00", stop: []byte("k04\x00"), rev: 10, maxKeys: 1024, live: 4, keys: 5, stopReason: RunStopKey, at: "k05"},
		{name: "stop key a prefix of the next key", from: "k00", stop: []byte("k1"), rev: 10, maxKeys: 1024, live: 8, keys: 10, stopReason: RunStopKey, at: "k10"},
		{name: "stop key is the current key", from: "k02", stop: []byte("k02"), rev: 10, maxKeys: 1024, stopReason: RunStopKey, at: "k02"},
		{name: "empty stop key", from: "k02", stop: []byte{}, rev: 10, maxKeys: 1024, stopReason: RunStopKey, at: "k02"},
		{name: "stop key beyond the upper bound", from: "k00", upper: "k02", stop: []byte("k09"), rev: 10, maxKeys: 1024, live: 2, keys: 2, stopReason: RunExhausted},
		{name: "flushed", from: "k00", rev: 10, maxKeys: 1024, live: 8, keys: 10, stopReason: RunNewer, at: "k10", flushedFirst: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.flushedFirst {
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			it, err := db.NewIterator(CFKV, IterOptions{Upper: []byte(tt.upper)})
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			if !it.SeekGE([]byte(tt.from)) {
				t.Fatalf("no key at %s", tt.from)
			}
			_ = it.Key() // cached: the run must invalidate it
			got := it.CountRun(&testRule, tt.rev, tt.stop, tt.maxKeys)
			want := CountResult{Live: tt.live, Keys: tt.keys, Stop: tt.stopReason}
			if got != want {
				t.Fatalf("CountRun = %+v, want %+v", got, want)
			}
			at := ""
			if it.Valid() {
				at = string(it.Key())
			}
			if at != tt.at {
				t.Fatalf("left on %q, want %q", at, tt.at)
			}
			if err := it.Error(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCountRunMaxKeys: one call classifies at most CountRunMaxKeys keys,
// and consecutive calls count every key once.
func TestCountRunMaxKeys(t *testing.T) {
	const n = 2*CountRunMaxKeys + 100
	db := countDB(t, n, "k%06d", func(i int) []byte {
		if i%3 == 0 {
			return hdr(0x80, 5, 0, 0)
		}
		return hdr(0, 5, 1, 0)
	})
	it, err := db.NewIterator(CFKV, IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	it.First()
	var live, keys, calls int
	for {
		r := it.CountRun(&testRule, 10, nil, math.MaxInt)
		calls++
		if r.Keys > CountRunMaxKeys {
			t.Fatalf("one run classified %d keys, more than %d", r.Keys, CountRunMaxKeys)
		}
		live += r.Live
		keys += r.Keys
		if r.Stop == RunExhausted {
			break
		}
		if r.Stop != RunMaxKeys || calls > 10 {
			t.Fatalf("run %d: %+v", calls, r)
		}
	}
	if wantLive := n - (n+2)/3; keys != n || live != wantLive || calls != 3 {
		t.Fatalf("%d calls counted %d keys, %d live; want 3 calls, %d keys, %d live", calls, keys, live, n, wantLive)
	}
}

// TestCountRunAllocs: a run allocates nothing in Go.
func TestCountRunAllocs(t *testing.T) {
	db := countDB(t, 100, "k%03d", func(int) []byte { return hdr(0, 5, 1, 0) })
	it, err := db.NewIterator(CFKV, IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	stop := []byte("k050")
	allocs := testing.AllocsPerRun(100, func() {
		it.First()
		if r := it.CountRun(&testRule, 10, stop, CountRunMaxKeys); r.Live != 50 {
			t.Fatalf("%+v", r)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}
