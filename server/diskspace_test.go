package server

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDiskFullNoSpace injects the free space the member sees on its data
// directory's filesystem (the real-filesystem version, on a size-capped
// tmpfs, is `make disk-faults`): below the reserve in force, writes that add data
// fail with etcd's "etcdserver: mvcc: database space exceeded" and NOSPACE
// is raised through raft; reads and deletes are served; nothing written
// before is lost; once space is back and the alarm disarmed, writes
// resume. Disarming while the disk is still short raises it again.
func TestDiskFullNoSpace(t *testing.T) {
	var freeBytes atomic.Uint64
	freeBytes.Store(1 << 40)
	cfg := inProcessConfig(t, t.TempDir())
	// A reserve below what the engines can take in one step is raised to
	// that step (minDiskReserveBytes), so 1 byte short of the step is low.
	cfg.DiskReserveBytes = 1
	cfg.diskFreeBytes = func(string) (uint64, error) { return freeBytes.Load(), nil }
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := cli.Put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}

	freeBytes.Store(uint64(minDiskReserveBytes(cfg)) - 1)
	waitAlarms(t, cli, []*pb.AlarmMember{{MemberID: s.ID(), Alarm: pb.AlarmType_NOSPACE}})
	if _, err := cli.Put(ctx, "d", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put with the disk short: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("d", "v")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("txn put with the disk short: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.Delete(ctx, "c"); err != nil {
		t.Fatalf("delete with the disk short: %v", err)
	}
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read with the disk short: %v", err)
	}
	if len(resp.Kvs) != 2 || string(resp.Kvs[0].Value) != "v-a" || string(resp.Kvs[1].Value) != "v-b" {
		t.Fatalf("keys with the disk short: %v", resp.Kvs)
	}

	// Disarming while still short: the next write raises NOSPACE again.
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: s.ID(), Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "d", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put after disarming with the disk still short: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	waitAlarms(t, cli, []*pb.AlarmMember{{MemberID: s.ID(), Alarm: pb.AlarmType_NOSPACE}})

	// Space freed: the alarm stays until disarmed (etcd's rule), then
	// writes resume.
	freeBytes.Store(1 << 40)
	time.Sleep(2 * quotaCheckInterval)
	if _, err := cli.Put(ctx, "d", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put with space back but NOSPACE armed: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: s.ID(), Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	waitAlarms(t, cli, nil)
	if _, err := cli.Put(ctx, "d", "v-d"); err != nil {
		t.Fatalf("put after space was freed and NOSPACE disarmed: %v", err)
	}
	resp, err = cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 3 {
		t.Fatalf("keys after recovery: %v, %v", resp, err)
	}
}

// waitAlarms waits until the member's alarm list is want.
func waitAlarms(t *testing.T, cli *clientv3.Client, want []*pb.AlarmMember) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cli.AlarmList(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Alarms) == len(want) {
			same := true
			for i := range want {
				same = same && resp.Alarms[i].MemberID == want[i].MemberID && resp.Alarms[i].Alarm == want[i].Alarm
			}
			if same {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alarms %v, want %v", resp.Alarms, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
