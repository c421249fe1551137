package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/tuning"
)

// corruptCheckInterval is --experimental-corrupt-check-time in these tests.
const corruptCheckInterval = time.Second

// TestCorruptionCheck runs a 3-member cluster with the periodic corruption
// check on, alters one follower's stored value offline (through the engine,
// so raft never learns of it), and checks etcd's behaviour: the initial
// check refuses to start the member with "found data inconsistency with
// peers", and without it the leader's periodic check raises CORRUPT for
// that member, after which writes fail everywhere with "etcdserver: corrupt
// cluster" and reads are still served. The same restarts on unaltered data
// start cleanly and raise nothing (the check has no false positive).
func TestCorruptionCheck(t *testing.T) {
	c := newCluster(t, 3, "--experimental-corrupt-check-time", corruptCheckInterval.String())
	cli := c.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lead := c.leader(t)
	var f *member
	for _, m := range c.members {
		if m != lead {
			f = m
			break
		}
	}
	st, err := f.client(t).Status(ctx, f.clientURL)
	if err != nil {
		t.Fatal(err)
	}
	fID := st.Header.MemberId
	waitSameRevision(t, c)

	// Control: several check passes over agreeing members raise nothing,
	// and the initial check passes on unaltered data.
	time.Sleep(3 * corruptCheckInterval)
	if alarms := alarmList(t, cli); len(alarms) != 0 {
		t.Fatalf("alarms over agreeing members: %v", alarms)
	}
	f.kill(syscall.SIGTERM)
	plain := f.extraArgs
	f.extraArgs = append(append([]string(nil), plain...), "--experimental-initial-corrupt-check")
	f.start()
	f.waitReady()
	f.kill(syscall.SIGTERM)

	// Alter k3's value in the follower's kv column family, offline.
	alterValue(t, filepath.Join(f.dataDir, "member", "engine"), "k3")

	// With the initial check the member refuses to start.
	f.start()
	select {
	case <-f.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s with altered data still running after 60s; log:\n%s", f.name, f.log.String())
	}
	want := fmt.Sprintf("%016x found data inconsistency with peers", fID)
	if f.exitErr == nil || !strings.Contains(f.log.String(), want) {
		t.Fatalf("%s exited with %v, want a failure logging %q; log:\n%s", f.name, f.exitErr, want, f.log.String())
	}

	// Without it the member starts; the leader's periodic check finds it.
	f.extraArgs = plain
	f.start()
	f.waitReady()
	poll(t, 30*time.Second, "CORRUPT alarm for the altered member", func() error {
		for _, a := range alarmList(t, cli) {
			if a.Alarm == pb.AlarmType_CORRUPT && a.MemberID == fID {
				return nil
			}
		}
		return errors.New("not raised")
	})
	for _, m := range c.members {
		mc := m.client(t)
		poll(t, 10*time.Second, m.name+" refusing writes", func() error {
			_, err := mc.Put(ctx, "after", "x")
			if !errors.Is(err, rpctypes.ErrCorrupt) {
				return fmt.Errorf("put returned %v, want %v", err, rpctypes.ErrCorrupt)
			}
			return nil
		})
		if _, err := mc.Delete(ctx, "k1"); !errors.Is(err, rpctypes.ErrCorrupt) {
			t.Fatalf("%s: delete returned %v, want %v", m.name, err, rpctypes.ErrCorrupt)
		}
		if _, err := mc.Get(ctx, "k1"); err != nil {
			t.Fatalf("%s: get under CORRUPT: %v (etcd serves reads)", m.name, err)
		}
	}
	out, err := etcdctl(t, c.endpoints(), "", "put", "after", "x")
	if err == nil || !strings.Contains(out, "etcdserver: corrupt cluster") {
		t.Fatalf("etcdctl put under CORRUPT: err %v, output %q", err, out)
	}
}

// waitSameRevision waits until every member reports the same revision.
func waitSameRevision(t *testing.T, c *testCluster) {
	t.Helper()
	poll(t, 30*time.Second, "members at one revision", func() error {
		var revs []int64
		for _, m := range c.members {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := m.client(t).Status(ctx, m.clientURL)
			cancel()
			if err != nil {
				return err
			}
			revs = append(revs, st.Header.Revision)
		}
		for _, r := range revs {
			if r != revs[0] {
				return fmt.Errorf("revisions %v", revs)
			}
		}
		return nil
	})
}

func alarmList(t *testing.T, cli *clientv3.Client) []*pb.AlarmMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Alarms
}

// alterValue changes the last byte of key's latest value in the stopped
// member's engine: the record's value is its tail (mvcc/encoding.go).
func alterValue(t *testing.T, dir, key string) {
	t.Helper()
	db, err := engine.Open(dir, tuning.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	v, ok, err := db.Get(engine.CFKV, []byte(key))
	if err != nil || !ok || len(v) == 0 {
		t.Fatalf("get %q from %s: found %v, err %v", key, dir, ok, err)
	}
	v = append([]byte(nil), v...)
	v[len(v)-1]++
	b := db.NewBatch()
	b.Put(engine.CFKV, []byte(key), v)
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
}
