package mvcc

import (
	"bytes"
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Txn applies raft entry index, a TxnRequest, exactly as etcd's
// txn.Txn: every compare (including those of nested txns on the chosen
// path) is evaluated against the state before the txn; then the chosen
// branch's requests are checked (range revisions, ignore_* keys, leases)
// against that same state, and any failure fails the whole txn with no
// effect; then the requests run in order, each seeing the writes of the
// ones before it. All writes share one revision and one atomic batch; a
// txn that writes nothing creates no revision.
func (s *Store) Txn(index uint64, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	var resp *pb.TxnResponse
	err := s.applyWrite(index, groupableTxn(r), func(tx *writeTxn) error {
		if err := validateTxnStructure(r); err != nil {
			return err
		}
		ctx := context.Background()
		rv := tx.view() // the state before the txn: it has no writes yet
		txnPath := compareToPath(ctx, rv, r)
		if _, err := s.checkTxn(ctx, rv, r, txnPath); err != nil {
			return err
		}
		resp, _ = newTxnResp(r, txnPath)
		if _, err := tx.executeTxn(ctx, r, txnPath, resp); err != nil {
			return err
		}
		resp.Header.Revision = tx.beginRev
		if len(tx.events) != 0 {
			resp.Header.Revision++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ReadTxn serves a txn that writes nothing (every op of both branches, at
// any depth, is a Range) as a read at the current revision, without raft,
// as etcd serves read-only txns. It takes no lock.
func (s *Store) ReadTxn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := validateTxnStructure(r); err != nil {
		return nil, err
	}
	if !txnReadOnly(r) {
		return nil, fmt.Errorf("mvcc: ReadTxn given a txn that writes")
	}
	g, err := s.readGen()
	if err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	st := s.state.Load()
	rv := &view{src: s.db, curRev: st.rev, base: st.rev, compacted: st.compacted, cidx: s.cidx}
	txnPath := compareToPath(ctx, rv, r)
	if _, err := s.checkTxn(ctx, rv, r, txnPath); err != nil {
		return nil, err
	}
	resp, _ := newTxnResp(r, txnPath)
	if _, err := executeReadTxn(ctx, s, rv, r, txnPath, resp); err != nil {
		return nil, err
	}
	resp.Header.Revision = st.rev
	if rv.usedHistory && s.state.Load().compacted > st.compacted {
		// A compaction started while we read history: versions we looked
		// for may be gone (see reader).
		return nil, ErrCompacted
	}
	if err := s.checkReadGen(g); err != nil {
		return nil, err
	}
	return resp, nil
}

func txnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !txnReadOnly(v.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// executeReadTxn runs the ranges of a read-only txn's chosen path.
func executeReadTxn(ctx context.Context, s *Store, rv *view, rt *pb.TxnRequest, txnPath []bool, tresp *pb.TxnResponse) (txns int, err error) {
	reqs := rt.Success
	if !txnPath[0] {
		reqs = rt.Failure
	}
	for i, req := range reqs {
		respi := tresp.Responses[i].Response
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resp, err := executeRange(ctx, s.lg, rv, tv.RequestRange)
			if err != nil {
				return 0, fmt.Errorf("applyTxn: failed Range: %w", err)
			}
			respi.(*pb.ResponseOp_ResponseRange).ResponseRange = resp
		case *pb.RequestOp_RequestTxn:
			resp := respi.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			n, err := executeReadTxn(ctx, s, rv, tv.RequestTxn, txnPath[1:], resp)
			if err != nil {
				return 0, err
			}
			txns += n + 1
			txnPath = txnPath[n+1:]
		}
	}
	return txns, nil
}

// newTxnResp allocates a txn response for a txn request given a path.
func newTxnResp(rt *pb.TxnRequest, txnPath []bool) (txnResp *pb.TxnResponse, txnCount int) {
	reqs := rt.Success
	if !txnPath[0] {
		reqs = rt.Failure
	}
	resps := make([]*pb.ResponseOp, len(reqs))
	txnResp = &pb.TxnResponse{
		Responses: resps,
		Succeeded: txnPath[0],
		Header:    &pb.ResponseHeader{},
	}
	for i, req := range reqs {
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case *pb.RequestOp_RequestPut:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case *pb.RequestOp_RequestDeleteRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case *pb.RequestOp_RequestTxn:
			resp, txns := newTxnResp(tv.RequestTxn, txnPath[1:])
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: resp}}
			txnPath = txnPath[1+txns:]
			txnCount += txns + 1
		default:
		}
	}
	return txnResp, txnCount
}

func (tx *writeTxn) executeTxn(ctx context.Context, rt *pb.TxnRequest, txnPath []bool, tresp *pb.TxnResponse) (txns int, err error) {
	reqs := rt.Success
	if !txnPath[0] {
		reqs = rt.Failure
	}
	for i, req := range reqs {
		respi := tresp.Responses[i].Response
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resp, err := executeRange(ctx, tx.s.lg, tx.view(), tv.RequestRange)
			if err != nil {
				return 0, fmt.Errorf("applyTxn: failed Range: %w", err)
			}
			respi.(*pb.ResponseOp_ResponseRange).ResponseRange = resp
		case *pb.RequestOp_RequestPut:
			resp, err := tx.put(ctx, tv.RequestPut)
			if err != nil {
				return 0, fmt.Errorf("applyTxn: failed Put: %w", err)
			}
			respi.(*pb.ResponseOp_ResponsePut).ResponsePut = resp
		case *pb.RequestOp_RequestDeleteRange:
			resp, err := tx.deleteRange(ctx, tv.RequestDeleteRange)
			if err != nil {
				return 0, fmt.Errorf("applyTxn: failed DeleteRange: %w", err)
			}
			respi.(*pb.ResponseOp_ResponseDeleteRange).ResponseDeleteRange = resp
		case *pb.RequestOp_RequestTxn:
			resp := respi.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			applyTxns, err := tx.executeTxn(ctx, tv.RequestTxn, txnPath[1:], resp)
			if err != nil {
				return 0, err
			}
			txns += applyTxns + 1
			txnPath = txnPath[applyTxns+1:]
		default:
			// empty union
		}
	}
	return txns, nil
}

// checkTxn is etcd's: it checks the chosen branch against the state before
// the txn and returns the first error.
func (s *Store) checkTxn(ctx context.Context, rv *view, rt *pb.TxnRequest, txnPath []bool) (int, error) {
	txnCount := 0
	reqs := rt.Success
	if !txnPath[0] {
		reqs = rt.Failure
	}
	for _, req := range reqs {
		var err error
		var txns int
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			err = checkRange(rv, tv.RequestRange)
		case *pb.RequestOp_RequestPut:
			err = s.checkPut(ctx, rv, tv.RequestPut)
		case *pb.RequestOp_RequestDeleteRange:
		case *pb.RequestOp_RequestTxn:
			txns, err = s.checkTxn(ctx, rv, tv.RequestTxn, txnPath[1:])
			txnCount += txns + 1
			txnPath = txnPath[txns+1:]
		default:
			// empty union
		}
		if err != nil {
			return 0, err
		}
	}
	return txnCount, nil
}

func (s *Store) checkPut(ctx context.Context, rv *view, req *pb.PutRequest) error {
	if req.IgnoreValue || req.IgnoreLease {
		// expects previous key-value, error if not exist
		rr, err := rv.rangeKeys(ctx, req.Key, nil, 0, 0, false)
		if err != nil {
			return err
		}
		if rr == nil || len(rr.kvs) == 0 {
			return ErrKeyNotFound
		}
	}
	if req.Lease != 0 && !s.leases.exists(req.Lease) {
		return ErrLeaseNotFound
	}
	return nil
}

func checkRange(rv *view, req *pb.RangeRequest) error {
	switch {
	case req.Revision == 0:
		return nil
	case req.Revision > rv.curRev:
		return ErrFutureRev
	case req.Revision < rv.compacted:
		return ErrCompacted
	}
	return nil
}

func compareToPath(ctx context.Context, rv *view, rt *pb.TxnRequest) []bool {
	txnPath := make([]bool, 1)
	ops := rt.Success
	if txnPath[0] = applyCompares(ctx, rv, rt.Compare); !txnPath[0] {
		ops = rt.Failure
	}
	for _, op := range ops {
		tv, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || tv.RequestTxn == nil {
			continue
		}
		txnPath = append(txnPath, compareToPath(ctx, rv, tv.RequestTxn)...)
	}
	return txnPath
}

func applyCompares(ctx context.Context, rv *view, cmps []*pb.Compare) bool {
	for _, c := range cmps {
		if !applyCompare(ctx, rv, c) {
			return false
		}
	}
	return true
}

// applyCompare is etcd's: a compare over a range holds when every key in
// it satisfies it; over no key, a VALUE compare fails and the others
// compare against the zero KeyValue.
func applyCompare(ctx context.Context, rv *view, c *pb.Compare) bool {
	rr, err := rv.rangeKeys(ctx, c.Key, mkGteRange(c.RangeEnd), 0, 0, false)
	if err != nil {
		return false
	}
	if len(rr.kvs) == 0 {
		if c.Target == pb.Compare_VALUE {
			// Always fail if comparing a value on a key/keys that doesn't exist;
			// nil == empty string in grpc; no way to represent missing value
			return false
		}
		return compareKV(c, mvccpb.KeyValue{})
	}
	for _, kv := range rr.kvs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

func compareKV(c *pb.Compare, ckv mvccpb.KeyValue) bool {
	var result int
	rev := int64(0)
	switch c.Target {
	case pb.Compare_VALUE:
		var v []byte
		if tv, _ := c.TargetUnion.(*pb.Compare_Value); tv != nil {
			v = tv.Value
		}
		result = bytes.Compare(ckv.Value, v)
	case pb.Compare_CREATE:
		if tv, _ := c.TargetUnion.(*pb.Compare_CreateRevision); tv != nil {
			rev = tv.CreateRevision
		}
		result = compareInt64(ckv.CreateRevision, rev)
	case pb.Compare_MOD:
		if tv, _ := c.TargetUnion.(*pb.Compare_ModRevision); tv != nil {
			rev = tv.ModRevision
		}
		result = compareInt64(ckv.ModRevision, rev)
	case pb.Compare_VERSION:
		if tv, _ := c.TargetUnion.(*pb.Compare_Version); tv != nil {
			rev = tv.Version
		}
		result = compareInt64(ckv.Version, rev)
	case pb.Compare_LEASE:
		if tv, _ := c.TargetUnion.(*pb.Compare_Lease); tv != nil {
			rev = tv.Lease
		}
		result = compareInt64(ckv.Lease, rev)
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	default:
		return 0
	}
}
