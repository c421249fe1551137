package transport_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/metastore/metastore/raftlog/transport"
)

// printRaft stands in for the raft node: it prints what arrives.
type printRaft struct{ got chan raftpb.Message }

func (r printRaft) Process(_ context.Context, m raftpb.Message) error { r.got <- m; return nil }
func (printRaft) ReportUnreachable(uint64)                            {}
func (printRaft) ReportSnapshot(uint64, raft.SnapshotStatus)          {}

type noSnapshots struct{}

func (noSnapshots) OpenSnapshot(raftpb.Message) (string, func(), error) {
	return "", nil, fmt.Errorf("no snapshots here")
}
func (noSnapshots) SnapshotReceived(raftpb.Message, string) error { return nil }

// Two members on loopback: each serves its Transport's Handler under /raft/
// on its peer listener, with the server set up by ConfigureServer, and adds
// the other as a peer.
func Example() {
	dir, _ := os.MkdirTemp("", "transport-example")
	defer os.RemoveAll(dir)

	start := func(id uint64) (*transport.Transport, printRaft, string, func()) {
		r := printRaft{got: make(chan raftpb.Message, 1)}
		tr, err := transport.New(transport.Config{
			LocalID:     id,
			ClusterID:   0x1000,
			SnapshotDir: filepath.Join(dir, fmt.Sprint(id)),
		}, r, noSnapshots{}, noSnapshots{}, nil)
		if err != nil {
			panic(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/raft/", tr.Handler())
		srv := &http.Server{Handler: mux}
		tr.ConfigureServer(srv)
		go srv.Serve(ln)
		return tr, r, "http://" + ln.Addr().String(), func() { tr.Stop(); srv.Close() }
	}
	tr1, _, url1, stop1 := start(1)
	defer stop1()
	tr2, raft2, url2, stop2 := start(2)
	defer stop2()
	tr1.AddPeer(2, []string{url2})
	tr2.AddPeer(1, []string{url1})

	tr1.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 5}})
	m := <-raft2.got
	fmt.Printf("member 2 got %v from %d at term %d\n", m.Type, m.From, m.Term)
	// Output: member 2 got MsgHeartbeat from 1 at term 5
}
