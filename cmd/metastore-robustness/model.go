package main

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The model is a sequential specification of the etcd KV, Txn and Lease
// semantics the traffic uses, with revisions (after etcd's
// tests/robustness/model, written anew): a state is the keyspace (value,
// mod revision and lease of each key), the set of live leases and the
// store's revision. Every successful write must answer the revision the
// model reaches, every linearizable read the model's keys and revision, so
// a history linearizes only in an order consistent with the revisions the
// cluster handed out.
//
// A request that failed or timed out may or may not have been applied: its
// step has two outcomes, the state unchanged and the state with the request
// applied (NondeterministicModel). Reads that failed are dropped before
// checking; they change nothing.

// opKind is what a request does.
type opKind uint8

const (
	opRange opKind = iota
	opPut
	opDelete
	opTxn
	opLeaseGrant
	opLeaseRevoke
)

func (k opKind) String() string {
	return [...]string{"range", "put", "delete", "txn", "lease-grant", "lease-revoke"}[k]
}

// KV is one key as a read or an event reports it.
type KV struct {
	Key, Value string
	ModRev     int64
}

// Cond is one Txn comparison: mod_revision(Key) == ModRev, or, when
// ByValue, value(Key) == Value.
type Cond struct {
	Key     string
	ByValue bool
	ModRev  int64
	Value   string
}

// TxnOp is one operation of a Txn branch: a put (with an optional lease),
// a delete of one key, or a read of one key.
type TxnOp struct {
	Kind  opKind // opPut, opDelete or opRange
	Key   string
	Value string
	Lease int64
}

// Request is the input of one recorded operation.
type Request struct {
	Kind opKind
	// Range: [Key, End) or Key alone when End is ""; Limit 0 = no limit.
	// Put: Key, Value, Lease. Delete: Key. Lease: Lease.
	Key, End string
	Limit    int64
	Value    string
	Lease    int64
	// Txn.
	Conds      []Cond
	Then, Else []TxnOp
}

// Response is the output of one recorded operation.
type Response struct {
	// Unknown: the request failed or timed out; it may have been applied.
	Unknown bool
	Rev     int64 // header revision
	// Range (and the reads of a Txn, one slice per op).
	KVs     []KV
	Count   int64
	More    bool
	Deleted int64
	// Txn.
	Succeeded bool
	Results   [][]KV
}

// keyValue is one key's state.
type keyValue struct {
	Value  string
	ModRev int64
	Lease  int64
}

// modelState is immutable once built: steps copy what they change.
type modelState struct {
	Rev    int64
	KVs    map[string]keyValue
	Leases map[int64]bool
}

func initState() *modelState {
	// etcd starts at revision 1 with an empty keyspace.
	return &modelState{Rev: 1, KVs: map[string]keyValue{}, Leases: map[int64]bool{}}
}

func (s *modelState) clone() *modelState {
	return &modelState{Rev: s.Rev, KVs: maps.Clone(s.KVs), Leases: maps.Clone(s.Leases)}
}

func statesEqual(a, b *modelState) bool {
	return a.Rev == b.Rev && maps.Equal(a.KVs, b.KVs) && maps.Equal(a.Leases, b.Leases)
}

// rangeKVs reads [key, end) (key alone if end is "") with limit.
func rangeKVs(kvs map[string]keyValue, key, end string, limit int64) (out []KV, count int64, more bool) {
	for k, v := range kvs {
		if (end == "" && k == key) || (end != "" && k >= key && k < end) {
			out = append(out, KV{Key: k, Value: v.Value, ModRev: v.ModRev})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	count = int64(len(out))
	if limit > 0 && int64(len(out)) > limit {
		out, more = out[:limit], true
	}
	return out, count, more
}

// apply runs req on s and returns the next state and the response etcd
// must give. ok is false when etcd must refuse the request (a put with a
// lease that does not exist, a grant of a lease that exists, a revoke of
// one that does not): then the state is unchanged.
func apply(s *modelState, req *Request) (next *modelState, resp Response, ok bool) {
	switch req.Kind {
	case opRange:
		kvs, count, more := rangeKVs(s.KVs, req.Key, req.End, req.Limit)
		return s, Response{Rev: s.Rev, KVs: kvs, Count: count, More: more}, true
	case opPut:
		if req.Lease != 0 && !s.Leases[req.Lease] {
			return s, Response{}, false
		}
		n := s.clone()
		n.Rev++
		n.KVs[req.Key] = keyValue{Value: req.Value, ModRev: n.Rev, Lease: req.Lease}
		return n, Response{Rev: n.Rev}, true
	case opDelete:
		if _, ok := s.KVs[req.Key]; !ok {
			return s, Response{Rev: s.Rev}, true
		}
		n := s.clone()
		n.Rev++
		delete(n.KVs, req.Key)
		return n, Response{Rev: n.Rev, Deleted: 1}, true
	case opLeaseGrant:
		if s.Leases[req.Lease] {
			return s, Response{}, false
		}
		n := s.clone()
		n.Leases[req.Lease] = true
		return n, Response{Rev: n.Rev}, true
	case opLeaseRevoke:
		if !s.Leases[req.Lease] {
			return s, Response{}, false
		}
		n := s.clone()
		delete(n.Leases, req.Lease)
		changed := false
		for k, v := range n.KVs {
			if v.Lease == req.Lease {
				delete(n.KVs, k)
				changed = true
			}
		}
		if changed {
			n.Rev++
		}
		return n, Response{Rev: n.Rev}, true
	case opTxn:
		succeeded := true
		for _, c := range req.Conds {
			v, exists := s.KVs[c.Key]
			if c.ByValue {
				succeeded = succeeded && exists && v.Value == c.Value
			} else {
				succeeded = succeeded && v.ModRev == c.ModRev // 0 for a missing key
			}
		}
		ops := req.Then
		if !succeeded {
			ops = req.Else
		}
		n := s.clone()
		changed := false
		results := make([][]KV, len(ops))
		// Every write of a Txn takes the same, next revision. The traffic
		// never reads a key a Txn writes, so reads see the state before.
		for i, op := range ops {
			switch op.Kind {
			case opRange:
				results[i], _, _ = rangeKVs(s.KVs, op.Key, "", 0)
			case opPut:
				if op.Lease != 0 && !s.Leases[op.Lease] {
					return s, Response{}, false
				}
				n.KVs[op.Key] = keyValue{Value: op.Value, ModRev: s.Rev + 1, Lease: op.Lease}
				changed = true
			case opDelete:
				if _, ok := n.KVs[op.Key]; ok {
					delete(n.KVs, op.Key)
					changed = true
				}
			}
		}
		if changed {
			n.Rev++
		} else {
			n = s
		}
		return n, Response{Rev: n.Rev, Succeeded: succeeded, Results: results}, true
	}
	panic(fmt.Sprintf("model: unknown request kind %d", req.Kind))
}

func kvsEqual(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// responsesMatch compares what etcd answered with what the model expects.
func responsesMatch(req *Request, got, want Response) bool {
	if got.Rev != want.Rev {
		return req.Kind == opLeaseGrant // a grant's header revision is not specified
	}
	switch req.Kind {
	case opRange:
		return kvsEqual(got.KVs, want.KVs) && got.Count == want.Count && got.More == want.More
	case opDelete:
		return got.Deleted == want.Deleted
	case opTxn:
		if got.Succeeded != want.Succeeded || len(got.Results) != len(want.Results) {
			return false
		}
		for i := range got.Results {
			if !kvsEqual(got.Results[i], want.Results[i]) {
				return false
			}
		}
	}
	return true
}

// step is the nondeterministic step function.
func step(state any, input any, output any) []any {
	s, req, resp := state.(*modelState), input.(*Request), output.(*Response)
	next, want, ok := apply(s, req)
	if resp.Unknown {
		if !ok || next == s {
			return []any{s}
		}
		return []any{s, next}
	}
	if !ok || !responsesMatch(req, *resp, want) {
		return nil
	}
	return []any{next}
}

// etcdModel is the porcupine model of the KV, Txn and Lease history.
var etcdModel = porcupine.NondeterministicModel{
	Init:  func() []any { return []any{initState()} },
	Step:  step,
	Equal: func(a, b any) bool { return statesEqual(a.(*modelState), b.(*modelState)) },
	Hash: func(s any) uint64 {
		st := s.(*modelState)
		return uint64(st.Rev)*1000003 + uint64(len(st.KVs))*31 + uint64(len(st.Leases))
	},
	DescribeOperation: func(input, output any) string {
		return describeRequest(input.(*Request)) + " -> " + describeResponse(output.(*Response))
	},
	DescribeState: func(s any) string {
		st := s.(*modelState)
		keys := make([]string, 0, len(st.KVs))
		for k := range st.KVs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "rev=%d", st.Rev)
		for _, k := range keys {
			v := st.KVs[k]
			fmt.Fprintf(&b, " %s=%s@%d", k, v.Value, v.ModRev)
			if v.Lease != 0 {
				fmt.Fprintf(&b, "(lease %x)", v.Lease)
			}
		}
		return b.String()
	},
}

func describeRequest(r *Request) string {
	switch r.Kind {
	case opRange:
		if r.End == "" {
			return fmt.Sprintf("get(%s)", r.Key)
		}
		return fmt.Sprintf("range(%s..%s limit %d)", r.Key, r.End, r.Limit)
	case opPut:
		if r.Lease != 0 {
			return fmt.Sprintf("put(%s=%s lease %x)", r.Key, r.Value, r.Lease)
		}
		return fmt.Sprintf("put(%s=%s)", r.Key, r.Value)
	case opDelete:
		return fmt.Sprintf("delete(%s)", r.Key)
	case opLeaseGrant, opLeaseRevoke:
		return fmt.Sprintf("%s(%x)", r.Kind, r.Lease)
	}
	var b strings.Builder
	b.WriteString("txn(if")
	for _, c := range r.Conds {
		if c.ByValue {
			fmt.Fprintf(&b, " value(%s)==%s", c.Key, c.Value)
		} else {
			fmt.Fprintf(&b, " mod(%s)==%d", c.Key, c.ModRev)
		}
	}
	for _, br := range []struct {
		name string
		ops  []TxnOp
	}{{" then", r.Then}, {" else", r.Else}} {
		b.WriteString(br.name)
		for _, op := range br.ops {
			switch op.Kind {
			case opPut:
				fmt.Fprintf(&b, " put(%s=%s)", op.Key, op.Value)
			case opDelete:
				fmt.Fprintf(&b, " delete(%s)", op.Key)
			default:
				fmt.Fprintf(&b, " get(%s)", op.Key)
			}
		}
	}
	b.WriteString(")")
	return b.String()
}

func describeResponse(r *Response) string {
	if r.Unknown {
		return "unknown"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d", r.Rev)
	if r.Deleted > 0 {
		fmt.Fprintf(&b, " deleted %d", r.Deleted)
	}
	for _, kv := range r.KVs {
		fmt.Fprintf(&b, " %s=%s@%d", kv.Key, kv.Value, kv.ModRev)
	}
	if r.More {
		fmt.Fprintf(&b, " (count %d, more)", r.Count)
	}
	if r.Results != nil {
		fmt.Fprintf(&b, " succeeded=%v", r.Succeeded)
		for _, res := range r.Results {
			for _, kv := range res {
				fmt.Fprintf(&b, " %s=%s@%d", kv.Key, kv.Value, kv.ModRev)
			}
		}
	}
	return b.String()
}
