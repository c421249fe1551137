package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/metastore/metastore/raftlog/transport"
)

// faultsPath is where --experimental-peer-faults mounts the fault hook on
// the peer listener. Without the flag nothing is mounted and it 404s.
const faultsPath = "/debug/faults"

// faultsHandler drives a member's transport faults from outside the process,
// for end-to-end tests of real processes. It is test-only: anyone who can
// reach the peer listener can partition the member, so it is off unless
// Config.ExperimentalPeerFaults is set.
//
//	POST /debug/faults?op=blackhole&peer=<hex id>       cut what we send to peer
//	POST /debug/faults?op=blackhole-from&peer=<hex id>  refuse what peer sends us
//	POST /debug/faults?op=drop&peer=<hex id>&p=0.5      drop with probability p
//	POST /debug/faults?op=delay&peer=<hex id>&ms=75&jitter=50
//	POST /debug/faults?op=seed&n=42                     reseed drop and jitter
//	POST /debug/faults?op=heal                          remove every fault
//	GET  /debug/faults                                  faultsStatus as JSON
//
// Member IDs are hex, as etcdctl prints them. A bad request answers 400 and
// changes nothing.
type faultsHandler struct {
	faults *transport.Faults
	stats  func() map[uint64]transport.PeerStats
	// raftLogFirstIndex is the first index of the member's raft log: a
	// test polls it to know the log was truncated past a follower.
	raftLogFirstIndex func() uint64
}

// faultsStatus is what GET answers: the raft log's first index and each
// peer's transport counters, by hex member ID.
type faultsStatus struct {
	RaftLogFirstIndex uint64                    `json:"raftLogFirstIndex"`
	Peers             map[string]faultPeerStats `json:"peers"`
}

// faultPeerStats is the JSON form of one peer's transport counters.
type faultPeerStats struct {
	Active            bool   `json:"active"`
	MsgsSent          uint64 `json:"msgsSent"`
	MsgsReceived      uint64 `json:"msgsReceived"`
	MsgsDropped       uint64 `json:"msgsDropped"`
	MsgsFaultDropped  uint64 `json:"msgsFaultDropped"`
	SnapshotsSent     uint64 `json:"snapshotsSent"`
	SnapshotsFailed   uint64 `json:"snapshotsFailed"`
	SnapshotsReceived uint64 `json:"snapshotsReceived"`
}

func (h faultsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		out := faultsStatus{RaftLogFirstIndex: h.raftLogFirstIndex(), Peers: map[string]faultPeerStats{}}
		for id, st := range h.stats() {
			out.Peers[strconv.FormatUint(id, 16)] = faultPeerStats{
				Active:            !st.ActiveSince.IsZero(),
				MsgsSent:          st.MsgsSent,
				MsgsReceived:      st.MsgsReceived,
				MsgsDropped:       st.MsgsDropped,
				MsgsFaultDropped:  st.MsgsFaultDropped,
				SnapshotsSent:     st.SnapshotsSent,
				SnapshotsFailed:   st.SnapshotsFailed,
				SnapshotsReceived: st.SnapshotsReceived,
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	case http.MethodPost:
		if err := h.apply(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// apply parses and applies one POSTed fault; it checks every argument
// before touching the Faults (whose setters panic on bad values).
func (h faultsHandler) apply(r *http.Request) error {
	q := r.URL.Query()
	peer := func() (uint64, error) {
		id, err := strconv.ParseUint(q.Get("peer"), 16, 64)
		if err != nil || id == 0 {
			return 0, fmt.Errorf("peer=%q is not a hex member ID", q.Get("peer"))
		}
		return id, nil
	}
	nonNegMs := func(name string) (time.Duration, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a number of milliseconds", name, v)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	switch op := q.Get("op"); op {
	case "heal":
		h.faults.Heal()
	case "seed":
		n, err := strconv.ParseUint(q.Get("n"), 10, 64)
		if err != nil {
			return fmt.Errorf("n=%q is not a number", q.Get("n"))
		}
		h.faults.Seed(n)
	case "blackhole", "blackhole-from":
		id, err := peer()
		if err != nil {
			return err
		}
		if op == "blackhole" {
			h.faults.Blackhole(id)
		} else {
			h.faults.BlackholeFrom(id)
		}
	case "drop":
		id, err := peer()
		if err != nil {
			return err
		}
		p, err := strconv.ParseFloat(q.Get("p"), 64)
		if err != nil || !(p >= 0 && p <= 1) {
			return fmt.Errorf("p=%q is not a probability in [0, 1]", q.Get("p"))
		}
		h.faults.Drop(id, p)
	case "delay":
		id, err := peer()
		if err != nil {
			return err
		}
		d, err := nonNegMs("ms")
		if err != nil {
			return err
		}
		jitter, err := nonNegMs("jitter")
		if err != nil {
			return err
		}
		h.faults.Delay(id, d, jitter)
	default:
		return fmt.Errorf("op=%q is not one of blackhole, blackhole-from, drop, delay, seed, heal", op)
	}
	return nil
}
