//go:build diskfaults

package main

// Disk full on a real filesystem: a size-capped tmpfs mounted for the test
// (needs root or CAP_SYS_ADMIN, so it is built only with -tags diskfaults
// and run by `make disk-faults`; `make test` covers the same paths with
// injected faults: server.TestDiskFullNoSpace, TestDiskFaultApplyWriteFails,
// TestDiskFaultFsyncFails). Each run fills the filesystem with puts of one
// value size until a write fails, then checks that:
//
//   - with the reserve on (--disk-reserve-bytes), the failure is etcd's
//     NOSPACE: "etcdserver: mvcc: database space exceeded", the member keeps
//     serving reads, every acknowledged write is intact, and once space is
//     freed and the alarm disarmed writes resume;
//   - with the reserve off, RocksDB's ENOSPC stops the member on purpose,
//     it cannot lose anything acknowledged, and it starts again (and passes
//     `metastore check`) once space is freed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	tmpfsBytes        = 1 << 30   // the filesystem under the member's data dir
	diskReserveBytes  = 256 << 20 // --disk-reserve-bytes of the reserve runs (above the low-memory preset's minimum, 184 MiB)
	fillHeadroomBytes = 96 << 20  // free space left above the reserve by the filler file
)

// diskFullArgs run the data engine with small memtables (8 MiB x 2), so a
// run fills the filesystem in seconds.
var diskFullArgs = []string{"--engine-preset", "low-memory"}

// diskFullValueBytes are the value sizes of the runs.
var diskFullValueBytes = []int{4 << 10, 64 << 10, 512 << 10}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (make disk-faults needs root or CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes a file that leaves leave bytes free on dir's filesystem.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	n := freeBytes(t, dir) - leave
	if n <= 0 {
		t.Fatalf("only %d bytes free, want more than %d", freeBytes(t, dir), leave)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		w := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:w]); err != nil {
			t.Fatal(err)
		}
		n -= w
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// fillWithPuts puts values of size bytes until a put fails and returns the
// acknowledged writes and the error.
func fillWithPuts(t *testing.T, cli *clientv3.Client, size int) (map[string]string, error) {
	acked := map[string]string{}
	for i := 0; ; i++ {
		k := fmt.Sprintf("fill-%06d", i)
		v := strings.Repeat(string(rune('a'+i%26)), size)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, k, v)
		cancel()
		if err != nil {
			return acked, err
		}
		acked[k] = v
		if i > 1<<20 {
			t.Fatalf("%d puts of %d bytes and the disk is not full", i, size)
		}
	}
}

// diskFullMember starts one member with its data on a fresh tmpfs.
func diskFullMember(t *testing.T, args ...string) (*member, string) {
	binaries(t)
	mnt := mountTmpfs(t, tmpfsBytes)
	ports := freePorts(t, 2)
	m := &member{
		t: t, name: "full", dataDir: filepath.Join(mnt, "data"),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		extraArgs: args, clusterSt: "new",
	}
	m.extraArgs = append(append([]string(nil), diskFullArgs...), args...)
	m.initialCl = m.name + "=" + m.peerURL
	m.start()
	t.Cleanup(func() {
		m.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("log of %s:\n%s", m.name, m.log.String())
		}
	})
	m.waitReady()
	return m, mnt
}

func TestDiskFullReserve(t *testing.T) {
	for _, size := range diskFullValueBytes {
		t.Run(fmt.Sprintf("value-%dKiB", size>>10), func(t *testing.T) {
			m, mnt := diskFullMember(t, "--disk-reserve-bytes", fmt.Sprint(diskReserveBytes))
			filler := fill(t, mnt, diskReserveBytes+fillHeadroomBytes)
			cli := m.client(t)
			acked, err := fillWithPuts(t, cli, size)
			if !errors.Is(err, rpctypes.ErrNoSpace) {
				t.Fatalf("after %d puts: %v, want %v", len(acked), err, rpctypes.ErrNoSpace)
			}
			t.Logf("%d puts of %d KiB acknowledged, then %q; %d MiB free", len(acked), size>>10, err, freeBytes(t, mnt)>>20)
			if !m.alive() {
				t.Fatal("member exited under NOSPACE")
			}
			checkAcked(t, m, acked)
			waitNoSpace(t, cli, true)

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second) // a free-space sample
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			alarms, err := cli.AlarmList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range alarms.Alarms {
				if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
					t.Fatal(err)
				}
			}
			waitNoSpace(t, cli, false)
			putAcked(t, cli, "after", 20, acked)
			m.kill(syscall.SIGTERM)
			m.start()
			m.waitReady()
			checkAcked(t, m, acked)
			m.kill(syscall.SIGTERM)
			checkData(t, m)
		})
	}
}

func TestDiskFullENOSPC(t *testing.T) {
	for _, size := range diskFullValueBytes {
		t.Run(fmt.Sprintf("value-%dKiB", size>>10), func(t *testing.T) {
			m, mnt := diskFullMember(t, "--disk-reserve-bytes", "-1")
			filler := fill(t, mnt, fillHeadroomBytes)
			acked, err := fillWithPuts(t, m.client(t), size)
			t.Logf("%d puts of %d KiB acknowledged, then %v", len(acked), size>>10, err)
			m.waitExit(t, "No space left on device")

			// Still full: whatever the member does, it must not damage what
			// is on disk.
			m.start()
			select {
			case <-m.exited:
				t.Logf("restart with the disk still full: exited (%v)", m.exitErr)
			case <-time.After(10 * time.Second):
				t.Logf("restart with the disk still full: running")
				m.kill(syscall.SIGKILL)
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			m.start()
			m.waitReady()
			checkAcked(t, m, acked)
			putAcked(t, m.client(t), "after", 20, acked)
			m.kill(syscall.SIGTERM)
			checkData(t, m)
		})
	}
}

// waitNoSpace waits until the NOSPACE alarm is (or is not) listed.
func waitNoSpace(t *testing.T, cli *clientv3.Client, want bool) {
	t.Helper()
	poll(t, 15*time.Second, fmt.Sprintf("NOSPACE listed = %v", want), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.AlarmList(ctx)
		if err != nil {
			return err
		}
		has := false
		for _, a := range resp.Alarms {
			has = has || a.Alarm == pb.AlarmType_NOSPACE
		}
		if has != want {
			return fmt.Errorf("alarms %v", resp.Alarms)
		}
		return nil
	})
}

// checkData runs `metastore check` on the stopped member's data.
func checkData(t *testing.T, m *member) {
	t.Helper()
	out, err := exec.Command(metastoreBin, "check", "--data-dir", m.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("metastore check: %v\n%s", err, out)
	}
}
