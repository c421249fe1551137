package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Disk faults on real processes: a failed fsync of the raft log and a failed
// write of the data engine (injected through engine/failpoint in a binary
// built with -tags failpoints), and damaged write-ahead logs (edited on disk
// while the member is down). The real-filesystem disk-full runs, on a
// size-capped tmpfs, are `make disk-faults` (diskfull_tmpfs_test.go).

var (
	failpointsOnce sync.Once
	failpointsErr  error
	failpointsBin  string // metastore built with -tags failpoints
)

// failpointsBinary builds metastore with the failpoints compiled in, once
// per test binary.
func failpointsBinary(t *testing.T) string {
	t.Helper()
	binaries(t)
	failpointsOnce.Do(func() {
		failpointsBin = filepath.Join(binDir, "metastore-failpoints")
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", failpointsBin, ".").CombinedOutput()
		if err != nil {
			failpointsErr = fmt.Errorf("go build -tags failpoints: %v\n%s", err, out)
		}
	})
	if failpointsErr != nil {
		t.Fatal(failpointsErr)
	}
	return failpointsBin
}

// startBin is start with another binary.
func (m *member) startBin(bin string) {
	m.t.Helper()
	m.log = &syncBuffer{}
	m.cmd = exec.Command(bin, m.args()...)
	m.cmd.Stdout = m.log
	m.cmd.Stderr = m.log
	m.exited = make(chan struct{})
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	go func() {
		m.exitErr = m.cmd.Wait()
		close(m.exited)
	}()
}

// setFailpoint sets a failpoint of a running failpoints build over its peer
// port.
func (m *member) setFailpoint(t *testing.T, name, term string) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("%s/debug/failpoints?name=%s&term=%s", m.peerURL, name, term), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("setting failpoint %s=%s: %s", name, term, resp.Status)
	}
}

// waitExit waits for the member to exit on its own and checks that it
// failed with want in its log.
func (m *member) waitExit(t *testing.T, want string) {
	t.Helper()
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30s after the fault; log:\n%s", m.name, m.log.String())
	}
	if m.exitErr == nil || !strings.Contains(m.log.String(), want) {
		t.Fatalf("%s exited with %v, want a failure logging %q; log:\n%s", m.name, m.exitErr, want, m.log.String())
	}
	for _, line := range strings.Split(m.log.String(), "\n") {
		if strings.Contains(line, want) {
			t.Logf("%s exited (%v): %s", m.name, m.exitErr, line)
			break
		}
	}
}

// putAcked writes n keys prefix-i and returns those acknowledged.
func putAcked(t *testing.T, cli *clientv3.Client, prefix string, n int, acked map[string]string) {
	t.Helper()
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("%s-%04d", prefix, i), fmt.Sprintf("value-%s-%d", prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, k, v)
		cancel()
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		acked[k] = v
	}
}

// checkAcked checks that every acknowledged key has its value.
func checkAcked(t *testing.T, m *member, acked map[string]string) {
	t.Helper()
	cli := m.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	for k, v := range acked {
		if got[k] != v {
			t.Fatalf("acknowledged %s=%q lost: have %q (%d keys)", k, v, got[k], len(got))
		}
	}
}

// TestDiskFaultFsyncFails: a failed fsync of the raft log is fatal (the
// member exits, as etcd's does), and on restart every acknowledged write is
// there.
func TestDiskFaultFsyncFails(t *testing.T) {
	bin := failpointsBinary(t)
	c := newCluster(t, 1)
	m := c.members[0]
	m.kill(syscall.SIGTERM)
	m.startBin(bin)
	m.waitReady()
	acked := map[string]string{}
	putAcked(t, m.client(t), "before", 100, acked)

	m.setFailpoint(t, "raftSync", "error")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := m.client(t).Put(ctx, "doomed", "x")
	cancel()
	if err == nil {
		t.Fatal("a put was acknowledged although the raft log's fsync failed")
	}
	m.waitExit(t, "persisting raft state failed")

	m.start() // the normal build: the disk works again
	m.waitReady()
	checkAcked(t, m, acked)
	putAcked(t, m.client(t), "after", 10, acked)
	checkAcked(t, m, acked)
}

// TestDiskFaultApplyWriteFails: a failed write of an apply batch (what
// ENOSPC or EIO in the data engine looks like) stops the member instead of
// marking the entry applied without its effects; on restart the raft log
// replays the entry, so the write is applied exactly once. Before the fix
// the member went on and the write was silently missing from it for good.
func TestDiskFaultApplyWriteFails(t *testing.T) {
	bin := failpointsBinary(t)
	c := newCluster(t, 1)
	m := c.members[0]
	m.kill(syscall.SIGTERM)
	m.startBin(bin)
	m.waitReady()
	acked := map[string]string{}
	cli := m.client(t)
	putAcked(t, cli, "before", 50, acked)
	time.Sleep(time.Second) // let start-up's own entries (attribute publish) apply

	m.setFailpoint(t, "applyWrite", "error")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := cli.Put(ctx, "committed-not-applied", "x")
	cancel()
	if err == nil {
		t.Fatal("a put was answered although its apply write failed")
	}
	// The fatal line names the failed write: "applying a raft entry failed
	// to write to the engine", or for a group of entries written together
	// "writing a group of applied raft entries to the engine failed".
	m.waitExit(t, "injected error at applyWrite")
	if !strings.Contains(m.log.String(), `"level":"fatal"`) {
		t.Fatalf("the failed apply write was not fatal; log:\n%s", m.log.String())
	}

	m.start()
	m.waitReady()
	acked["committed-not-applied"] = "x" // committed in the raft log before the apply failed
	checkAcked(t, m, acked)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.client(t).Get(ctx, "committed-not-applied")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 || resp.Kvs[0].ModRevision != 52 {
		t.Fatalf("replayed write: %v %v, want version 1 at revision 52 (50 puts after revision 1, then this one)", resp, err)
	}
}

// newestWAL returns the path of the newest RocksDB WAL file in dir.
func newestWAL(t *testing.T, dir string) string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL in %s (%v)", dir, err)
	}
	sort.Strings(logs) // zero-padded numbers
	return logs[len(logs)-1]
}

// walEngines are the member's two engines, each with its own WAL.
var walEngines = []string{"raft", "engine"}

// walMember starts a member, writes enough for both WALs to hold records
// (a low --snapshot-count makes the data engine sync its WAL), and kills it
// with SIGKILL. It returns the member and what was acknowledged.
func walMember(t *testing.T) (*member, map[string]string) {
	c := newCluster(t, 1, "--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "50")
	m := c.members[0]
	acked := map[string]string{}
	putAcked(t, m.client(t), "k", 300, acked)
	time.Sleep(2500 * time.Millisecond) // the log truncation loop (1 s) syncs the data engine's WAL
	m.kill(syscall.SIGKILL)
	for _, e := range walEngines {
		if st, err := os.Stat(newestWAL(t, filepath.Join(m.dataDir, "member", e))); err != nil || st.Size() < 4096 {
			t.Fatalf("%s WAL too small to damage: %v %v", e, st, err)
		}
	}
	return m, acked
}

// TestDiskFaultWALTornTail: a torn last record, as a crash mid-write leaves
// it (a record cut short, or a tail the filesystem extended but never
// wrote), is dropped on restart with nothing acknowledged lost.
func TestDiskFaultWALTornTail(t *testing.T) {
	m, acked := walMember(t)
	// A full-record header (checksum, length 1024, type 1) whose payload
	// stops after 100 bytes.
	torn := make([]byte, 7+100)
	binary.LittleEndian.PutUint32(torn[0:4], 0xdeadbeef)
	binary.LittleEndian.PutUint16(torn[4:6], 1024)
	torn[6] = 1
	for i := 7; i < len(torn); i++ {
		torn[i] = byte(i)
	}
	tails := map[string][]byte{"raft": torn, "engine": make([]byte, 8192)}
	for _, e := range walEngines {
		appendFile(t, newestWAL(t, filepath.Join(m.dataDir, "member", e)), tails[e])
	}
	m.start()
	m.waitReady()
	checkAcked(t, m, acked)

	// And the other way round: zeros on the raft log, a cut record on the
	// data engine.
	m.kill(syscall.SIGKILL)
	tails = map[string][]byte{"raft": make([]byte, 8192), "engine": torn}
	for _, e := range walEngines {
		appendFile(t, newestWAL(t, filepath.Join(m.dataDir, "member", e)), tails[e])
	}
	m.start()
	m.waitReady()
	checkAcked(t, m, acked)
}

// TestDiskFaultWALMidCorruption: a flipped byte in the middle of a WAL,
// with good records after it, stops the member from starting with a clear
// error instead of silently dropping what follows; once the damaged file is
// put back, it starts with everything.
func TestDiskFaultWALMidCorruption(t *testing.T) {
	for _, e := range walEngines {
		t.Run(e, func(t *testing.T) {
			m, acked := walMember(t)
			wal := newestWAL(t, filepath.Join(m.dataDir, "member", e))
			orig, err := os.ReadFile(wal)
			if err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), orig...)
			bad[len(bad)/3] ^= 0x5a
			if err := os.WriteFile(wal, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			m.start()
			which := map[string]string{"raft": "the raft log is damaged", "engine": "the data engine is damaged"}[e]
			m.waitExit(t, which)
			// RocksDB reports the damage ("Corruption:") unless the flipped
			// byte makes a record look cut short, which it takes for a torn
			// tail and drops with what follows. For the raft log that must
			// not happen here (the test's byte lands in a record); for the
			// data engine it may, and then the member finds that its state
			// no longer reaches the start of its (truncated) raft log and
			// refuses to start all the same (checkEngineCoversLog).
			log := m.log.String()
			if !strings.Contains(log, "Corruption:") {
				if e != "engine" || !strings.Contains(log, "behind its raft log") {
					t.Fatalf("log carries neither RocksDB's error nor the log-coverage check's:\n%s", log)
				}
				// RocksDB has already recovered to the "tail" and moved on
				// from that WAL, so putting the file back cannot help: the
				// member must keep refusing (never start with the gap); it
				// is rebuilt from its peers or a snapshot (RELIABILITY.md).
				if err := os.WriteFile(wal, orig, 0o600); err != nil {
					t.Fatal(err)
				}
				m.start()
				m.waitExit(t, "behind its raft log")
				return
			}
			if err := os.WriteFile(wal, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			m.start()
			m.waitReady()
			checkAcked(t, m, acked)
		})
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
