package watch

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// sendFragments is etcd v3.6's: a response of at least maxRequestBytes with
// two or more events goes out as several, each under maxRequestBytes unless
// it holds a single event, all but the last with fragment=true. clientv3
// joins consecutive fragments of one watch_id, so they must be sent back to
// back (they are: one queue entry).
func sendFragments(wr *pb.WatchResponse, maxRequestBytes int, send func(*pb.WatchResponse) error) error {
	if wr.Size() < maxRequestBytes || len(wr.Events) < 2 {
		return send(wr)
	}
	ow := *wr
	ow.Events = make([]*mvccpb.Event, 0)
	ow.Fragment = true
	var idx int
	for {
		cur := ow
		for _, ev := range wr.Events[idx:] {
			cur.Events = append(cur.Events, ev)
			if len(cur.Events) > 1 && cur.Size() >= maxRequestBytes {
				cur.Events = cur.Events[:len(cur.Events)-1]
				break
			}
			idx++
		}
		if idx == len(wr.Events) {
			cur.Fragment = false // the last one
		}
		if err := send(&cur); err != nil {
			return err
		}
		if !cur.Fragment {
			return nil
		}
	}
}
