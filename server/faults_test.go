package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/metastore/metastore/raftlog/transport"
)

type nopRaft struct{}

func (nopRaft) Process(context.Context, raftpb.Message) error { return nil }
func (nopRaft) ReportUnreachable(uint64)                      {}
func (nopRaft) ReportSnapshot(uint64, raft.SnapshotStatus)    {}

type nopSnapshots struct{}

func (nopSnapshots) OpenSnapshot(raftpb.Message) (string, func(), error) { return "", func() {}, nil }
func (nopSnapshots) SnapshotReceived(raftpb.Message, string) error       { return nil }

// TestFaultsHandler checks the hook's request parsing: a bad request is a
// 400 (never a panic in the Faults setters), a good one a 204.
func TestFaultsHandler(t *testing.T) {
	tr, err := transport.New(transport.Config{LocalID: 1, ClusterID: 7, SnapshotDir: t.TempDir()}, nopRaft{}, nopSnapshots{}, nopSnapshots{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	tr.AddPeer(2, []string{"http://127.0.0.1:1"})
	h := faultsHandler{faults: tr.Faults(), stats: tr.Stats, raftLogFirstIndex: func() uint64 { return 7 }}
	for _, tc := range []struct {
		method, query string
		want          int
	}{
		{"POST", "op=blackhole&peer=2", http.StatusNoContent},
		{"POST", "op=blackhole-from&peer=a1b2", http.StatusNoContent},
		{"POST", "op=drop&peer=2&p=0.5", http.StatusNoContent},
		{"POST", "op=delay&peer=2&ms=75&jitter=50", http.StatusNoContent},
		{"POST", "op=delay&peer=2&ms=75", http.StatusNoContent},
		{"POST", "op=seed&n=42", http.StatusNoContent},
		{"POST", "op=heal", http.StatusNoContent},
		{"POST", "op=drop&peer=2&p=1.5", http.StatusBadRequest},
		{"POST", "op=drop&peer=2&p=NaN", http.StatusBadRequest},
		{"POST", "op=drop&peer=2", http.StatusBadRequest},
		{"POST", "op=delay&peer=2&ms=-1", http.StatusBadRequest},
		{"POST", "op=blackhole&peer=xyz", http.StatusBadRequest},
		{"POST", "op=blackhole&peer=0", http.StatusBadRequest},
		{"POST", "op=blackhole", http.StatusBadRequest},
		{"POST", "op=seed", http.StatusBadRequest},
		{"POST", "op=explode", http.StatusBadRequest},
		{"PUT", "op=heal", http.StatusMethodNotAllowed},
		{"GET", "", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, faultsPath+"?"+tc.query, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: status %d, want %d (%s)", tc.method, tc.query, rec.Code, tc.want, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", faultsPath, nil))
	var st faultsStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Peers["2"]; !ok || len(st.Peers) != 1 || st.RaftLogFirstIndex != 7 {
		t.Fatalf("GET: %s", rec.Body)
	}
}
