package mvcc

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/tuning"
)

// testOptions are small engine options for tests: a few MiB of memory.
func testOptions() tuning.Options {
	o := tuning.Default()
	o.BlockCacheBytes = 8 << 20
	o.WriteBufferBytes = 4 << 20
	o.MaxWriteBufferNumber = 2
	o.Statistics = false
	return o
}

func openEngine(t testing.TB, dir string) *engine.DB {
	t.Helper()
	db, err := engine.Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testCfg compacts without pauses so tests run fast, and keeps count
// index buckets tiny so that every test's ranges cross, split and merge
// them.
func testCfg() Config {
	return Config{CompactionBatchLimitRevs: 3, CompactionBatchInterval: 1, CompactionBusyPercent: 100, CountIndexBucketKeys: 4,
		// 8 slots of a 2 KiB budget: collisions, replacements and the budget
		// bound all happen in every test.
		LatestCacheBytes: 2 << 10}
}

func openStore(t testing.TB, db *engine.DB, cfg Config) *Store {
	t.Helper()
	s, err := Open(db, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fmtKV prints a KeyValue compactly: key=value c=create m=mod v=version l=lease.
func fmtKV(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("%s=%s c=%d m=%d v=%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	if kv.Lease != 0 {
		s += fmt.Sprintf(" l=%d", kv.Lease)
	}
	return s
}

func fmtEvent(e *mvccpb.Event) string {
	s := fmt.Sprintf("%s %s", e.Type, fmtKV(e.Kv))
	if e.PrevKv != nil {
		s += " prev=(" + fmtKV(e.PrevKv) + ")"
	}
	return s
}

func fmtErr(err error) string { return "error: " + err.Error() }

// fmtResp prints any response the store returns, indented by depth.
func fmtResp(resp any, depth int) string {
	ind := strings.Repeat("  ", depth)
	var b strings.Builder
	hdr := func(h *pb.ResponseHeader) int64 {
		if h == nil {
			return -1
		}
		return h.Revision
	}
	switch r := resp.(type) {
	case *pb.RangeResponse:
		fmt.Fprintf(&b, "%srange rev=%d count=%d more=%t\n", ind, hdr(r.Header), r.Count, r.More)
		for _, kv := range r.Kvs {
			fmt.Fprintf(&b, "%s  %s\n", ind, fmtKV(kv))
		}
	case *pb.PutResponse:
		fmt.Fprintf(&b, "%sput rev=%d", ind, hdr(r.Header))
		if r.PrevKv != nil {
			fmt.Fprintf(&b, " prev=(%s)", fmtKV(r.PrevKv))
		}
		b.WriteString("\n")
	case *pb.DeleteRangeResponse:
		fmt.Fprintf(&b, "%sdel rev=%d deleted=%d\n", ind, hdr(r.Header), r.Deleted)
		for _, kv := range r.PrevKvs {
			fmt.Fprintf(&b, "%s  prev %s\n", ind, fmtKV(kv))
		}
	case *pb.TxnResponse:
		fmt.Fprintf(&b, "%stxn rev=%d succeeded=%t\n", ind, hdr(r.Header), r.Succeeded)
		for _, op := range r.Responses {
			switch o := op.Response.(type) {
			case *pb.ResponseOp_ResponseRange:
				b.WriteString(fmtResp(o.ResponseRange, depth+1))
			case *pb.ResponseOp_ResponsePut:
				b.WriteString(fmtResp(o.ResponsePut, depth+1))
			case *pb.ResponseOp_ResponseDeleteRange:
				b.WriteString(fmtResp(o.ResponseDeleteRange, depth+1))
			case *pb.ResponseOp_ResponseTxn:
				b.WriteString(fmtResp(o.ResponseTxn, depth+1))
			default:
				fmt.Fprintf(&b, "%s  <empty>\n", ind)
			}
		}
	default:
		fmt.Fprintf(&b, "%s%T\n", ind, resp)
	}
	return b.String()
}

// args is a parsed "cmd k=v flag ..." line.
type args map[string]string

func parseArgs(fields []string) args {
	a := args{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		a[k] = v
	}
	return a
}

func (a args) has(k string) bool { _, ok := a[k]; return ok }

func (a args) int(k string) int64 {
	v, ok := a[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		panic(fmt.Sprintf("bad %s=%q", k, v))
	}
	return n
}

// bytesArg returns the value of k with \x00 escapes decoded, or nil.
func (a args) bytes(k string) []byte {
	v, ok := a[k]
	if !ok {
		return nil
	}
	u, err := strconv.Unquote(`"` + v + `"`)
	if err != nil {
		panic(fmt.Sprintf("bad %s=%q", k, v))
	}
	return []byte(u)
}

func putReq(a args) *pb.PutRequest {
	return &pb.PutRequest{Key: a.bytes("k"), Value: a.bytes("v"), Lease: a.int("lease"),
		PrevKv: a.has("prev"), IgnoreValue: a.has("ignore-value"), IgnoreLease: a.has("ignore-lease")}
}

func delReq(a args) *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: a.bytes("k"), RangeEnd: a.bytes("end"), PrevKv: a.has("prev")}
}

func rangeReq(a args) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: a.bytes("k"), RangeEnd: a.bytes("end"), Revision: a.int("rev"),
		Limit: a.int("limit"), KeysOnly: a.has("keys-only"), CountOnly: a.has("count-only"),
		MinModRevision: a.int("min-mod"), MaxModRevision: a.int("max-mod"),
		MinCreateRevision: a.int("min-create"), MaxCreateRevision: a.int("max-create")}
	if s, ok := a["sort"]; ok {
		target, order, _ := strings.Cut(s, ",")
		switch target {
		case "key":
			r.SortTarget = pb.RangeRequest_KEY
		case "version":
			r.SortTarget = pb.RangeRequest_VERSION
		case "create":
			r.SortTarget = pb.RangeRequest_CREATE
		case "mod":
			r.SortTarget = pb.RangeRequest_MOD
		case "value":
			r.SortTarget = pb.RangeRequest_VALUE
		case "bad":
			r.SortTarget = 99
		}
		switch order {
		case "asc":
			r.SortOrder = pb.RangeRequest_ASCEND
		case "desc":
			r.SortOrder = pb.RangeRequest_DESCEND
		case "bad":
			r.SortOrder = 99
		}
	}
	return r
}

// parseTxn parses a txn script:
//
//	compare <value|version|create|mod|lease> k=.. [end=..] <=|!=|>|<> <operand>
//	then
//	<put|del|range|get ...>
//	txn              (nested; closed by "end")
//	else
//	...
func parseTxn(lines []string) (*pb.TxnRequest, []string) {
	r := &pb.TxnRequest{}
	branch := &r.Success
	inOps := false
	for len(lines) > 0 {
		line := strings.TrimSpace(lines[0])
		lines = lines[1:]
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "compare":
			r.Compare = append(r.Compare, parseCompare(f[1:]))
		case "then":
			branch, inOps = &r.Success, true
		case "else":
			branch, inOps = &r.Failure, true
		case "end":
			return r, lines
		case "txn":
			var sub *pb.TxnRequest
			sub, lines = parseTxn(lines)
			*branch = append(*branch, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: sub}})
		case "empty":
			*branch = append(*branch, &pb.RequestOp{})
		default:
			if !inOps {
				panic("op before then/else: " + line)
			}
			a := parseArgs(f[1:])
			switch f[0] {
			case "put":
				*branch = append(*branch, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: putReq(a)}})
			case "del":
				*branch = append(*branch, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: delReq(a)}})
			case "range", "get":
				*branch = append(*branch, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: rangeReq(a)}})
			default:
				panic("unknown txn op " + f[0])
			}
		}
	}
	return r, nil
}

func parseCompare(f []string) *pb.Compare {
	c := &pb.Compare{}
	a := parseArgs(f[1 : len(f)-2])
	c.Key, c.RangeEnd = a.bytes("k"), a.bytes("end")
	operand := f[len(f)-1]
	n, _ := strconv.ParseInt(operand, 10, 64)
	switch f[0] {
	case "value":
		c.Target = pb.Compare_VALUE
		c.TargetUnion = &pb.Compare_Value{Value: []byte(operand)}
	case "version":
		c.Target = pb.Compare_VERSION
		c.TargetUnion = &pb.Compare_Version{Version: n}
	case "create":
		c.Target = pb.Compare_CREATE
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: n}
	case "mod":
		c.Target = pb.Compare_MOD
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: n}
	case "lease":
		c.Target = pb.Compare_LEASE
		c.TargetUnion = &pb.Compare_Lease{Lease: n}
	default:
		panic("unknown compare target " + f[0])
	}
	switch f[len(f)-2] {
	case "=":
		c.Result = pb.Compare_EQUAL
	case "!=":
		c.Result = pb.Compare_NOT_EQUAL
	case ">":
		c.Result = pb.Compare_GREATER
	case "<":
		c.Result = pb.Compare_LESS
	default:
		panic("unknown compare op " + f[len(f)-2])
	}
	return c
}

// dumpState prints every column family mvcc owns, decoded.
func dumpState(t testing.TB, db *engine.DB) string {
	var b strings.Builder
	each := func(cf engine.CF, fn func(k, v []byte) string) {
		it, err := db.NewIterator(cf, engine.IterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			fmt.Fprintf(&b, "%s %s\n", cf, fn(it.Key(), it.Value()))
		}
	}
	fmtRec := func(v []byte) string {
		r, err := decodeRecord(v)
		if err != nil {
			return "CORRUPT " + err.Error()
		}
		if r.tombstone {
			return fmt.Sprintf("tombstone@%d.%d", r.mod.Main, r.mod.Sub)
		}
		s := fmt.Sprintf("put@%d.%d %q c=%d v=%d", r.mod.Main, r.mod.Sub, r.value, r.create, r.version)
		if r.lease != 0 {
			s += fmt.Sprintf(" l=%d", r.lease)
		}
		return s
	}
	each(engine.CFKV, func(k, v []byte) string { return fmt.Sprintf("%q: %s", k, fmtRec(v)) })
	each(engine.CFHistory, func(k, v []byte) string {
		uk, m, err := decodeHistoryKey(k)
		if err != nil {
			return "CORRUPT KEY " + err.Error()
		}
		return fmt.Sprintf("%q@%d: %s", uk, m, fmtRec(v))
	})
	each(engine.CFEvents, func(k, v []byte) string {
		rev, err := decodeEventKey(k)
		if err != nil {
			return "CORRUPT KEY"
		}
		evs, err := decodeEvents(v, rev)
		if err != nil {
			return "CORRUPT " + err.Error()
		}
		var parts []string
		for _, e := range evs {
			t := "put"
			if e.del {
				t = "del"
			}
			p := fmt.Sprintf("%s %q", t, e.key)
			if e.superseded != 0 {
				p += fmt.Sprintf(" sup=%d", e.superseded)
			}
			if e.inline != nil {
				p += " inline"
			}
			parts = append(parts, p)
		}
		return fmt.Sprintf("%d: %s", rev, strings.Join(parts, ", "))
	})
	each(engine.CFLease, func(k, v []byte) string {
		if k[0] == leasePrefix {
			id, _ := decodeLeaseKey(k)
			ttl, rem, _ := decodeLease(v)
			return fmt.Sprintf("lease %d ttl=%d remaining=%d", id, ttl, rem)
		}
		return fmt.Sprintf("attach %d %q", int64(beUint64(k[1:9])), k[9:])
	})
	each(engine.CFMeta, func(k, v []byte) string {
		if n, err := decodeU64(v); err == nil {
			return fmt.Sprintf("%s=%d", k, int64(n))
		}
		return fmt.Sprintf("%s=%q", k, v)
	})
	return b.String()
}

func beUint64(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}
