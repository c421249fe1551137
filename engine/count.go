package engine

// Counting runs: a count over a range (etcd's count with every page of a
// paginated list, count_only) only needs to know, for each key, whether
// its version is live at the read revision. Stepping an Iterator and
// reading each value's header in Go costs a cgo call and some Go work per
// key; CountRun does the same for up to CountRunMaxKeys keys in one call,
// reading the headers in C (native.h, ms_iter_count_run).
//
// The engine does not own the value format: the caller describes its
// header with a HeaderRule, and hands back to Go every key the rule cannot
// settle (a version newer than the read revision, a malformed header).

// #include <stdlib.h>
// #include "rocksdb/c.h"
// #include "native.h"
import "C"

import "fmt"

// CountRunMaxKeys bounds the keys one CountRun classifies, and so the time
// one call stays in C without returning to Go (tens of microseconds at
// 1024 keys of flushed data).
const CountRunMaxKeys = 1024

// MaxHeaderFields is the most uvarint fields a HeaderRule may describe.
const MaxHeaderFields = C.MS_HEADER_MAX_FIELDS

// HeaderRule describes the header at the start of each value that
// CountRun and Classify read:
//
//	flags   1 byte: 0 for a live version, DeadFlag for a dead one (a
//	        deletion); any other value is malformed
//	fields  Fields uvarints, each minimal (its shortest encoding, as Go's
//	        binary.AppendUvarint writes it); field 0 is the version's
//	        revision, 1 <= revision <= 2^63-1
//
// The masks below add the checks a well-formed header passes; bit i
// stands for field i. A header that fails any check is malformed. The
// value may go on after the header; CountRun does not read the rest.
//
// Worked example, mvcc's record header (mvcc/encoding.go, recordHeaderRule):
// flags (tombstone = 1), mod main, mod sub, create, version, lease is
// DeadFlag 1, Fields 5, Int63Fields {1,2,3}, DeadZeroFields {2,3,4},
// LiveNonZeroFields {2,3}, LiveAtMostRevFields {2}.
type HeaderRule struct {
	// DeadFlag is the flags byte of a dead version; not 0.
	DeadFlag byte
	// Fields is the number of uvarints, 1 to MaxHeaderFields.
	Fields int
	// Int63Fields must be at most 2^63-1 (field 0 always is).
	Int63Fields uint32
	// DeadZeroFields are 0 in a dead version.
	DeadZeroFields uint32
	// LiveNonZeroFields are at least 1 in a live version.
	LiveNonZeroFields uint32
	// LiveAtMostRevFields are at most field 0 in a live version.
	LiveAtMostRevFields uint32
}

// Validate reports what is wrong with the rule, if anything.
func (r *HeaderRule) Validate() error {
	if r.DeadFlag == 0 {
		return fmt.Errorf("engine: header rule: DeadFlag is 0, the live flags byte")
	}
	if r.Fields < 1 || r.Fields > MaxHeaderFields {
		return fmt.Errorf("engine: header rule: %d fields, want 1 to %d", r.Fields, MaxHeaderFields)
	}
	all := uint32(1)<<r.Fields - 1
	for _, m := range []uint32{r.Int63Fields, r.DeadZeroFields, r.LiveNonZeroFields, r.LiveAtMostRevFields} {
		if m&^all != 0 {
			return fmt.Errorf("engine: header rule: field mask %#x beyond %d fields", m, r.Fields)
		}
	}
	return nil
}

// cRule returns the rule for C. A rule that does not validate is a bug in
// the caller: it panics.
func (r *HeaderRule) cRule() C.ms_header_rule {
	if err := r.Validate(); err != nil {
		panic(err)
	}
	return C.ms_header_rule{
		dead_flag:    C.uchar(r.DeadFlag),
		fields:       C.int(r.Fields),
		int63:        C.uint(r.Int63Fields),
		dead_zero:    C.uint(r.DeadZeroFields),
		live_nonzero: C.uint(r.LiveNonZeroFields),
		live_le_rev:  C.uint(r.LiveAtMostRevFields),
	}
}

// HeaderClass is what a HeaderRule says of one value at a read revision.
type HeaderClass uint8

const (
	// HeaderLive: well formed, live, revision <= the read revision.
	HeaderLive HeaderClass = C.MS_LIVE
	// HeaderDead: well formed, dead, revision <= the read revision.
	HeaderDead HeaderClass = C.MS_DEAD
	// HeaderNewer: well formed, revision > the read revision; only the
	// caller knows which version was current at the read revision.
	HeaderNewer HeaderClass = C.MS_NEWER
	// HeaderMalformed: the value breaks the rule.
	HeaderMalformed HeaderClass = C.MS_MALFORMED
)

func (c HeaderClass) String() string {
	switch c {
	case HeaderLive:
		return "live"
	case HeaderDead:
		return "dead"
	case HeaderNewer:
		return "newer"
	case HeaderMalformed:
		return "malformed"
	}
	return fmt.Sprintf("HeaderClass(%d)", uint8(c))
}

// Classify applies the rule to value at revision rev, exactly as CountRun
// does to each key's value; for tests that pin a rule to its format's
// decoder. It panics if the rule does not validate.
func (r *HeaderRule) Classify(value []byte, rev int64) HeaderClass {
	return HeaderClass(C.ms_classify_value(r.cRule(), C.longlong(rev), bytesPtr(value), C.size_t(len(value))))
}

// RunStop says why a CountRun ended and where it left the iterator.
type RunStop uint8

const (
	// RunMaxKeys: it stepped past maxKeys keys and is on the next one.
	RunMaxKeys RunStop = C.MS_RUN_MAX
	// RunExhausted: the iterator is no longer valid; Error tells a
	// failure from the end of its bounds.
	RunExhausted RunStop = C.MS_RUN_EXHAUSTED
	// RunStopKey: it is on the first key >= stop.
	RunStopKey RunStop = C.MS_RUN_STOP_KEY
	// RunNewer: it is on a key whose value is HeaderNewer.
	RunNewer RunStop = C.MS_RUN_NEWER
	// RunMalformed: it is on a key whose value is HeaderMalformed.
	RunMalformed RunStop = C.MS_RUN_MALFORMED
)

func (s RunStop) String() string {
	switch s {
	case RunMaxKeys:
		return "max-keys"
	case RunExhausted:
		return "exhausted"
	case RunStopKey:
		return "stop-key"
	case RunNewer:
		return "newer"
	case RunMalformed:
		return "malformed"
	}
	return fmt.Sprintf("RunStop(%d)", uint8(s))
}

// CountResult is the outcome of a CountRun.
type CountResult struct {
	// Live is the number of keys classified HeaderLive.
	Live int
	// Keys is the number of keys classified HeaderLive or HeaderDead,
	// all of which the iterator stepped past.
	Keys int
	// Stop is why the run ended.
	Stop RunStop
}

// CountRun classifies the keys from the iterator's current position on
// with rule at revision rev, counting the live ones, and steps past each
// live or dead one. It stops, positioned as RunStop describes, after
// min(maxKeys, CountRunMaxKeys) keys, when the iterator becomes invalid,
// at the first key >= stop (nil: no stop key), or ON a key the rule
// cannot settle (newer than rev, or malformed), which it leaves for the
// caller to read with Key and Value and step past. It only steps forward
// (as Next); one call is one cgo call, with no allocation.
func (it *Iterator) CountRun(rule *HeaderRule, rev int64, stop []byte, maxKeys int) CountResult {
	cr := rule.cRule()
	n := min(max(maxKeys, 0), CountRunMaxKeys)
	hasStop := C.int(0)
	if stop != nil {
		hasStop = 1
	}
	r := C.ms_iter_count_run(it.it, it.pos, cr, C.longlong(rev),
		bytesPtr(stop), C.size_t(len(stop)), hasStop, C.size_t(n))
	it.moved()
	return CountResult{Live: int(r.live), Keys: int(r.keys), Stop: RunStop(r.stop)}
}
