package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// TestEtcdctlSingleMember drives every etcdctl command group against one
// metastore process and checks etcdctl's own output.
func TestEtcdctlSingleMember(t *testing.T) {
	c := newCluster(t, 1)
	eps := c.endpoints()
	run := func(stdin string, args ...string) string { return mustEtcdctl(t, eps, stdin, args...) }

	t.Run("put-get-del", func(t *testing.T) {
		if out := run("", "put", "foo", "bar"); strings.TrimSpace(out) != "OK" {
			t.Fatalf("put: %q", out)
		}
		if out := run("", "get", "foo"); out != "foo\nbar\n" {
			t.Fatalf("get: %q", out)
		}
		run("", "put", "foo1", "b1")
		run("", "put", "foo2", "b2")
		if out := run("", "get", "foo", "--prefix", "--keys-only"); out != "foo\n\nfoo1\n\nfoo2\n\n" {
			t.Fatalf("get --prefix --keys-only: %q", out)
		}
		if out := run("", "get", "foo", "--prefix", "--limit=1", "--write-out=json"); !strings.Contains(out, `"more":true`) || !strings.Contains(out, `"count":3`) {
			t.Fatalf("get --limit json: %s", out)
		}
		if out := run("", "del", "foo", "--prefix"); strings.TrimSpace(out) != "3" {
			t.Fatalf("del --prefix: %q", out)
		}
		if out := run("", "get", "foo"); out != "" {
			t.Fatalf("get after delete: %q", out)
		}
	})

	t.Run("txn", func(t *testing.T) {
		run("", "put", "t", "1")
		out := run("value(\"t\") = \"1\"\n\nput t 2\nget t\n\nput t fail\n\n", "txn", "--interactive=false")
		if !strings.HasPrefix(out, "SUCCESS") || !strings.Contains(out, "t\n2") {
			t.Fatalf("txn success branch: %q", out)
		}
		out = run("value(\"t\") = \"1\"\n\nput t 3\n\nput t failure\n\n", "txn", "--interactive=false")
		if !strings.HasPrefix(out, "FAILURE") {
			t.Fatalf("txn failure branch: %q", out)
		}
		if out := run("", "get", "t", "--print-value-only"); out != "failure\n" {
			t.Fatalf("after failure branch: %q", out)
		}
	})

	t.Run("compaction", func(t *testing.T) {
		run("", "put", "c", "1")
		out := run("", "put", "c", "2", "--write-out=json")
		rev := jsonInt(t, out, "revision")
		if out := run("", "compaction", fmt.Sprint(rev-1), "--physical"); !strings.Contains(out, fmt.Sprintf("compacted revision %d", rev-1)) {
			t.Fatalf("compaction: %q", out)
		}
		out, err := etcdctl(t, eps, "", "get", "c", fmt.Sprintf("--rev=%d", rev-2))
		if err == nil || !strings.Contains(out, "required revision has been compacted") {
			t.Fatalf("get below compaction: err=%v %q", err, out)
		}
		if out := run("", "get", "c", fmt.Sprintf("--rev=%d", rev-1), "--print-value-only"); out != "1\n" {
			t.Fatalf("get at compaction revision: %q", out)
		}
	})

	t.Run("watch", func(t *testing.T) {
		// Write first, then watch from the first write's revision: the
		// events come from history, so nothing depends on when etcdctl's
		// watch is registered.
		rev := jsonInt(t, run("", "put", "w1", "a", "--write-out=json"), "revision")
		run("", "put", "w1", "b")
		run("", "del", "w1")
		cmd := exec.Command(filepath.Join(etcdBinDir, "etcdctl"), "--endpoints", eps[0], "watch", "w", "--prefix", "--prev-kv", fmt.Sprintf("--rev=%d", rev))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		lines := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		want := []string{"PUT", "w1", "a", "PUT", "w1", "a", "w1", "b", "DELETE", "w1", "b", "w1", ""}
		deadline := time.After(20 * time.Second)
		for i, w := range want {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("etcdctl watch ended after %d lines", i)
				}
				if l != w {
					t.Fatalf("watch line %d: %q, want %q", i, l, w)
				}
			case <-deadline:
				t.Fatalf("watch: only %d of %d lines", i, len(want))
			}
		}
	})

	t.Run("lease", func(t *testing.T) {
		out := run("", "lease", "grant", "60")
		m := regexp.MustCompile(`lease ([0-9a-f]+) granted with TTL\((\d+)s\)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("lease grant: %q", out)
		}
		id := m[1]
		run("", "put", "lk", "v", "--lease="+id)
		out = run("", "lease", "timetolive", id, "--keys")
		if !strings.Contains(out, "granted with TTL(60s)") || !strings.Contains(out, "attached keys([lk])") {
			t.Fatalf("timetolive: %q", out)
		}
		if out := run("", "lease", "keep-alive", "--once", id); !strings.Contains(out, "keepalived with TTL(60)") {
			t.Fatalf("keep-alive: %q", out)
		}
		if out := run("", "lease", "list"); !strings.Contains(out, id) {
			t.Fatalf("lease list: %q", out)
		}
		if out := run("", "lease", "revoke", id); !strings.Contains(out, "revoked") {
			t.Fatalf("revoke: %q", out)
		}
		if out := run("", "get", "lk"); out != "" {
			t.Fatalf("key of a revoked lease survives: %q", out)
		}
		out, err := etcdctl(t, eps, "", "put", "x", "y", "--lease="+id)
		if err == nil || !strings.Contains(out, "requested lease not found") {
			t.Fatalf("put with revoked lease: %v %q", err, out)
		}
	})

	t.Run("member-endpoint", func(t *testing.T) {
		out := run("", "member", "list")
		if !strings.Contains(out, "started, m1, "+c.members[0].peerURL+", "+c.members[0].clientURL) {
			t.Fatalf("member list: %q", out)
		}
		if out := run("", "endpoint", "health"); !strings.Contains(out, "is healthy") {
			t.Fatalf("endpoint health: %q", out)
		}
		out = run("", "endpoint", "status", "--write-out=json")
		if !strings.Contains(out, `"version":"3.6.16"`) || !strings.Contains(out, `"leader":`) {
			t.Fatalf("endpoint status: %q", out)
		}
		if out := run("", "endpoint", "hashkv"); !strings.Contains(out, eps[0]) {
			t.Fatalf("endpoint hashkv: %q", out)
		}
	})

	t.Run("alarm-defrag", func(t *testing.T) {
		if out := run("", "alarm", "list"); out != "" {
			t.Fatalf("alarm list: %q", out)
		}
		if out := run("", "defrag"); !strings.Contains(out, "Finished defragmenting etcd member") {
			t.Fatalf("defrag: %q", out)
		}
		run("", "alarm", "disarm")
	})

	t.Run("snapshot-save-restore", func(t *testing.T) {
		run("", "put", "snapkey", "snapval")
		file := filepath.Join(t.TempDir(), "snap.db")
		if out := run("", "snapshot", "save", file); !strings.Contains(out, "Snapshot saved at") {
			t.Fatalf("snapshot save: %q", out)
		}
		ports := freePorts(t, 2)
		m := &member{t: t, name: "restored", dataDir: filepath.Join(t.TempDir(), "r"),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), peerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), clusterSt: "new"}
		m.initialCl = "restored=" + m.peerURL
		out, err := exec.Command(metastoreBin, append([]string{"snapshot", "restore", file}, m.args()...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("metastore snapshot restore: %v\n%s", err, out)
		}
		m.start()
		defer m.kill(syscall.SIGTERM)
		m.waitReady()
		if out := mustEtcdctl(t, []string{m.clientURL}, "", "get", "snapkey", "--print-value-only"); out != "snapval\n" {
			t.Fatalf("restored member: %q", out)
		}
	})

	t.Run("lock-elect", func(t *testing.T) {
		if out := run("", "lock", "mylock", "echo", "locked"); !strings.Contains(out, "locked") {
			t.Fatalf("lock: %q", out)
		}
		cmd := exec.Command(filepath.Join(etcdBinDir, "etcdctl"), "--endpoints", eps[0], "elect", "myelection", "proposal-1")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		line := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			if sc.Scan() {
				line <- sc.Text()
			}
		}()
		select {
		case l := <-line:
			if !strings.HasPrefix(l, "myelection/") {
				t.Fatalf("elect: %q", l)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("elect did not win")
		}
		// elect -l observes forever: read until the leader's value shows.
		obs := exec.Command(filepath.Join(etcdBinDir, "etcdctl"), "--endpoints", eps[0], "elect", "-l", "myelection")
		obsOut, _ := obs.StdoutPipe()
		if err := obs.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { obs.Process.Kill(); obs.Wait() }()
		seen := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(obsOut)
			for sc.Scan() {
				if sc.Text() == "proposal-1" {
					seen <- true
					return
				}
			}
			seen <- false
		}()
		select {
		case ok := <-seen:
			if !ok {
				t.Fatal("elect -l ended without showing the leader")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("elect -l did not show the leader")
		}
	})
}

func jsonInt(t *testing.T, out, field string) int64 {
	t.Helper()
	m := regexp.MustCompile(`"` + field + `":(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in %s", field, out)
	}
	var n int64
	fmt.Sscan(m[1], &n)
	return n
}

// TestClientv3 checks clientv3's KV API and errors and the concurrency
// recipes against one member.
func TestClientv3(t *testing.T) {
	c := newCluster(t, 1)
	cli := c.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	r1, err := cli.Put(ctx, "k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := cli.Put(ctx, "k", "v2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if r2.Header.Revision != r1.Header.Revision+1 || string(r2.PrevKv.Value) != "v1" {
		t.Fatalf("put: rev %d after %d, prev %v", r2.Header.Revision, r1.Header.Revision, r2.PrevKv)
	}
	if r2.Header.ClusterId == 0 || r2.Header.MemberId == 0 || r2.Header.RaftTerm == 0 {
		t.Fatalf("header not filled: %+v", r2.Header)
	}
	g, err := cli.Get(ctx, "k", clientv3.WithRev(r1.Header.Revision))
	if err != nil || string(g.Kvs[0].Value) != "v1" || g.Kvs[0].Version != 1 {
		t.Fatalf("get at old revision: %v %v", g, err)
	}
	if _, err := cli.Get(ctx, "k", clientv3.WithRev(r2.Header.Revision+100)); err != rpctypes.ErrFutureRev {
		t.Fatalf("future revision: %v", err)
	}
	if _, err := cli.Put(ctx, "", "v"); err != rpctypes.ErrEmptyKey {
		t.Fatalf("empty key: %v", err)
	}
	ops := make([]clientv3.Op, 129)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprint("op", i), "v")
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != rpctypes.ErrTooManyOps {
		t.Fatalf("too many ops: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit(); err != rpctypes.ErrDuplicateKey {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, err := cli.Put(ctx, "big", strings.Repeat("x", 1600*1024)); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("request too large: %v", err)
	}
	if _, err := cli.Put(ctx, "k", "v", clientv3.WithLease(12345)); err != rpctypes.ErrLeaseNotFound {
		t.Fatalf("lease not found: %v", err)
	}

	t.Run("mutex", func(t *testing.T) {
		s1, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		defer s1.Close()
		s2, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		m1 := concurrency.NewMutex(s1, "/lock/")
		m2 := concurrency.NewMutex(s2, "/lock/")
		if err := m1.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m2.TryLock(ctx); err != concurrency.ErrLocked {
			t.Fatalf("second TryLock: %v", err)
		}
		acquired := make(chan error, 1)
		go func() { acquired <- m2.Lock(ctx) }()
		time.Sleep(200 * time.Millisecond)
		select {
		case err := <-acquired:
			t.Fatalf("second Lock succeeded while held: %v", err)
		default:
		}
		if err := m1.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-acquired; err != nil {
			t.Fatal(err)
		}
		m2.Unlock(ctx)
	})

	t.Run("election", func(t *testing.T) {
		s1, _ := concurrency.NewSession(cli, concurrency.WithTTL(5))
		defer s1.Close()
		e1 := concurrency.NewElection(s1, "/elect/")
		if err := e1.Campaign(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		l, err := e1.Leader(ctx)
		if err != nil || string(l.Kvs[0].Value) != "a" {
			t.Fatalf("leader: %v %v", l, err)
		}
		if err := e1.Proclaim(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		obs := e1.Observe(ctx)
		select {
		case r := <-obs:
			if string(r.Kvs[0].Value) != "b" {
				t.Fatalf("observe: %q", r.Kvs[0].Value)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("observe timed out")
		}
		if err := e1.Resign(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stm", func(t *testing.T) {
		cli.Put(ctx, "acct/a", "100")
		cli.Put(ctx, "acct/b", "0")
		transfer := func(stm concurrency.STM) error {
			var a, b int
			fmt.Sscan(stm.Get("acct/a"), &a)
			fmt.Sscan(stm.Get("acct/b"), &b)
			stm.Put("acct/a", fmt.Sprint(a-1))
			stm.Put("acct/b", fmt.Sprint(b+1))
			return nil
		}
		errc := make(chan error, 10)
		for i := 0; i < 10; i++ {
			go func() {
				_, err := concurrency.NewSTM(cli, transfer, concurrency.WithAbortContext(ctx))
				errc <- err
			}()
		}
		for i := 0; i < 10; i++ {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		ga, _ := cli.Get(ctx, "acct/a")
		gb, _ := cli.Get(ctx, "acct/b")
		if string(ga.Kvs[0].Value) != "90" || string(gb.Kvs[0].Value) != "10" {
			t.Fatalf("STM lost an update: a=%s b=%s", ga.Kvs[0].Value, gb.Kvs[0].Value)
		}
	})
}

// TestThreeMembers replicates writes, survives the leader's SIGKILL with
// every acknowledged write present, and moves leadership with etcdctl.
func TestThreeMembers(t *testing.T) {
	c := newCluster(t, 3)
	cli := c.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var acked []string
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("k%03d", i)
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, k)
	}
	// Every member serves the writes (serializable reads are local).
	for _, m := range c.members {
		mc := m.client(t)
		r, err := mc.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		deadline := time.Now().Add(10 * time.Second)
		for err == nil && r.Count != 50 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			r, err = mc.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		}
		if err != nil || r.Count != 50 {
			t.Fatalf("%s has %v keys (err %v)", m.name, r, err)
		}
	}

	out := mustEtcdctl(t, c.endpoints(), "", "endpoint", "status", "--write-out=json")
	if strings.Count(out, `"leader"`) != 3 {
		t.Fatalf("endpoint status: %s", out)
	}

	// Kill the leader; the others elect a new one and keep every write.
	old := c.leader(t)
	old.kill(syscall.SIGKILL)
	var rest []string
	for _, m := range c.members {
		if m != old {
			rest = append(rest, m.clientURL)
		}
	}
	cli2, err := clientv3.New(clientv3.Config{Endpoints: rest, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli2.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := cli2.Put(ctx, "after-kill", "v")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted after the leader died: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r, err := cli2.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil || len(r.Kvs) != len(acked) {
		t.Fatalf("after leader kill: %d keys, want %d (err %v)", len(r.Kvs), len(acked), err)
	}
	// The killed member restarts and catches up.
	old.start()
	old.waitReady()
	oc := old.client(t)
	deadline = time.Now().Add(20 * time.Second)
	for {
		g, err := oc.Get(ctx, "after-kill", clientv3.WithSerializable())
		if err == nil && len(g.Kvs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member did not catch up: %v %v", g, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Move leadership with etcdctl.
	lead := c.leader(t)
	var target *member
	for _, m := range c.members {
		if m != lead {
			target = m
			break
		}
	}
	st, err := target.client(t).Status(ctx, target.clientURL)
	if err != nil {
		t.Fatal(err)
	}
	out = mustEtcdctl(t, []string{lead.clientURL}, "", "move-leader", fmt.Sprintf("%x", st.Header.MemberId))
	if !strings.Contains(out, "Leadership transferred") {
		t.Fatalf("move-leader: %q", out)
	}
	if got := c.leader(t); got != target {
		t.Fatalf("leader is %s, want %s", got.name, target.name)
	}
	_ = os.Getenv
}
