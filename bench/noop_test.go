package bench

import (
	"context"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestNoopServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &NoopServer{}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	put, err := cli.Put(ctx, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	get, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision != 1 || get.Header.Revision != 1 || len(get.Kvs) != 0 || get.Header.MemberId != NoopMemberID {
		t.Errorf("put header %v, get %v: want revision 1, no keys", put.Header, get)
	}
	cli.Close()

	o := DefaultOptions()
	o.Endpoints = []string{lis.Addr().String()}
	o.Clients, o.Conns, o.Total, o.OutDir = 4, 2, 200, ""
	sc, err := NewScenario("put")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, sc, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 200 || res.Errors != 0 || s.Calls() < 202 {
		t.Errorf("put run: %d ops, %d errors, server saw %d calls", res.Ops, res.Errors, s.Calls())
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
