package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestProgressRendering: a bar redrawn in place on a terminal, plain lines
// at most every progressLineInterval otherwise, a final line either way.
func TestProgressRendering(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	now := func() time.Time { return clock }

	var plain bytes.Buffer
	p := newProgressTo(&plain, false, "export", unitKeys, 100, now)
	p.Add(10) // too soon: nothing
	clock = clock.Add(progressLineInterval)
	p.Add(40)
	clock = clock.Add(time.Second)
	p.Add(50) // within the interval: nothing
	p.Done("wrote 100 keys")
	want := "export: 50 keys / 100 keys (50%), 10 keys/s\nexport: wrote 100 keys in 6s\n"
	if plain.String() != want {
		t.Errorf("plain progress:\n%q\nwant\n%q", plain.String(), want)
	}

	var tty bytes.Buffer
	clock = time.Unix(1_000_000, 0)
	p = newProgressTo(&tty, true, "snapshot save", unitBytes, 4<<20, now)
	clock = clock.Add(time.Second)
	p.Write(make([]byte, 1<<20))
	clock = clock.Add(progressRedrawInterval)
	p.Write(make([]byte, 1<<20))
	p.Done("4.0 MiB saved")
	out := tty.String()
	for _, w := range []string{
		"\r\033[Ksnapshot save [=======>                      ]  25%  1.0 MiB / 4.0 MiB  1.0 MiB/s",
		"\r\033[Ksnapshot save [===============>              ]  50%  2.0 MiB / 4.0 MiB",
		"\r\033[Ksnapshot save: 4.0 MiB saved in 1.1s\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("terminal progress %q lacks %q", out, w)
		}
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("terminal progress must end with exactly one newline: %q", out)
	}

	// Stop after an error clears the bar; after Done it writes nothing.
	var aborted bytes.Buffer
	clock = time.Unix(1_000_000, 0)
	p = newProgressTo(&aborted, true, "import", unitKeys, 10, now)
	clock = clock.Add(time.Second)
	p.Add(3)
	p.Stop()
	p.Stop()
	if got := aborted.String(); !strings.HasSuffix(got, "\r\033[K") || strings.Count(got, "\r\033[K") != 2 {
		t.Errorf("stopped bar: %q", got)
	}
	n := tty.Len()
	newProgressTo(&tty, true, "x", unitKeys, 1, now).Stop()
	if tty.Len() != n {
		t.Errorf("Stop of an undrawn bar wrote %q", tty.String()[n:])
	}

	var unknown bytes.Buffer
	clock = time.Unix(1_000_000, 0)
	p = newProgressTo(&unknown, false, "import", unitKeys, 0, now)
	clock = clock.Add(progressLineInterval)
	p.Add(5)
	if got := unknown.String(); got != "import: 5 keys, 1 keys/s\n" {
		t.Errorf("unknown total: %q", got)
	}
}

// runTool runs the metastore binary and returns stdout and stderr apart.
func runTool(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	binaries(t)
	cmd := exec.Command(metastoreBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// clusterState is what must survive a snapshot: every key with its
// revisions, the store's revision and compaction, the leases.
type clusterState struct {
	rev, compactRev int64
	hash            uint32
	kvs             []string
	leases          int
}

func readState(t *testing.T, m *member, atRev int64) clusterState {
	t.Helper()
	cli := m.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	st := clusterState{rev: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		st.kvs = append(st.kvs, fmt.Sprintf("%s=%s c%d m%d v%d l%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
	}
	h, err := cli.HashKV(ctx, m.clientURL, atRev)
	if err != nil {
		t.Fatalf("%s: hashkv at %d: %v", m.name, atRev, err)
	}
	st.hash, st.compactRev = h.Hash, h.CompactRevision
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.leases = len(ls.Leases)
	return st
}

// TestSnapshotClusterRoundTrip saves a snapshot of a running three-member
// cluster (with metastore snapshot save and with etcdctl), restores it into
// three new data directories with a new cluster's flags, starts them, and
// checks that every key, revision, the compaction, the leases and HashKV
// are the same on every new member as on the old cluster. The operator's
// status and compact helpers run against the new cluster.
func TestSnapshotClusterRoundTrip(t *testing.T) {
	src := newCluster(t, 3)
	cli := src.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 200; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k/%03d", i%80), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "k/01", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "leased", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, 150, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	last, err := cli.Put(ctx, "last", "v")
	if err != nil {
		t.Fatal(err)
	}
	rev := last.Header.Revision
	// Every source member has applied rev before the snapshot is taken.
	var want clusterState
	for i, m := range src.members {
		for deadline := time.Now().Add(10 * time.Second); ; {
			st := readState(t, m, rev)
			if st.rev == rev {
				if i == 0 {
					want = st
				} else if fmt.Sprint(st) != fmt.Sprint(want) {
					t.Fatalf("source members differ before the snapshot:\n%s: %+v\n%s: %+v", src.members[0].name, want, m.name, st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s at revision %d, want %d", m.name, st.rev, rev)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if want.compactRev != 150 || want.leases != 1 || len(want.kvs) != 72 {
		t.Fatalf("source state: compacted %d, %d leases, %d keys; want 150, 1, 72", want.compactRev, want.leases, len(want.kvs))
	}

	dir := t.TempDir()
	ours := filepath.Join(dir, "metastore.snap")
	stdout, stderr, err := runTool(t, "snapshot", "save", "--endpoints", src.members[1].clientURL, ours)
	if err != nil {
		t.Fatalf("metastore snapshot save: %v\n%s%s", err, stdout, stderr)
	}
	// Progress goes to stderr alone; stdout carries one line.
	if !strings.HasPrefix(stdout, "Snapshot saved at "+ours) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("snapshot save stdout: %q", stdout)
	}
	if !strings.Contains(stderr, "snapshot save: ") || !strings.Contains(stderr, " saved in ") {
		t.Errorf("snapshot save stderr lacks the final progress line: %q", stderr)
	}
	theirs := filepath.Join(dir, "etcdctl.snap")
	mustEtcdctl(t, []string{src.members[2].clientURL}, "", "snapshot", "save", theirs)

	for _, snap := range []string{ours, theirs} {
		t.Run(filepath.Base(snap), func(t *testing.T) {
			ports := freePorts(t, 6)
			base := t.TempDir()
			dst := &testCluster{t: t}
			var initial []string
			for i := 0; i < 3; i++ {
				m := &member{t: t, name: fmt.Sprintf("r%d", i+1), dataDir: filepath.Join(base, fmt.Sprintf("r%d", i+1)),
					clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]), peerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
					clusterSt: "new", extraArgs: []string{"--initial-cluster-token", "restored"}}
				initial = append(initial, m.name+"="+m.peerURL)
				dst.members = append(dst.members, m)
			}
			for _, m := range dst.members {
				m.initialCl = strings.Join(initial, ",")
				stdout, stderr, err := runTool(t, append([]string{"snapshot", "restore", snap}, m.args()...)...)
				if err != nil {
					t.Fatalf("restore %s: %v\n%s%s", m.name, err, stdout, stderr)
				}
				if !strings.Contains(stderr, "snapshot restore: ") || strings.Contains(stdout, "snapshot restore: ") {
					t.Errorf("restore progress must be on stderr only: stdout %q stderr %q", stdout, stderr)
				}
			}
			for _, m := range dst.members {
				m.start()
			}
			t.Cleanup(dst.stop)
			dst.waitReady()
			for _, m := range dst.members {
				got := readState(t, m, rev)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s after restore:\n%+v\nwant\n%+v", m.name, got, want)
				}
			}
			// The new cluster has its own identity and takes writes.
			if _, err := dst.client(t).Put(ctx, "after", "restore"); err != nil {
				t.Fatal(err)
			}

			eps := strings.Join(dst.endpoints(), ",")
			// Members publish their client URLs shortly after they serve.
			for deadline := time.Now().Add(10 * time.Second); ; {
				out := mustEtcdctl(t, dst.endpoints(), "", "member", "list")
				if !strings.Contains(out, ", , ") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("client URLs not published after 10s:\n%s", out)
				}
				time.Sleep(100 * time.Millisecond)
			}
			stdout, stderr, err := runTool(t, "status", "--endpoints", dst.members[0].clientURL, "--cluster")
			if err != nil {
				t.Fatalf("status: %v\n%s%s", err, stdout, stderr)
			}
			if strings.Count(stdout, "\n") != 4 || !strings.Contains(stderr, "status: 3 members agree") {
				t.Errorf("status output:\n%s%s", stdout, stderr)
			}
			stdout, stderr, err = runTool(t, "status", "--endpoints", eps, "-w", "json")
			var sts []endpointStatus
			if err != nil || json.Unmarshal([]byte(stdout), &sts) != nil || len(sts) != 3 {
				t.Fatalf("status -w json: %v\n%s%s", err, stdout, stderr)
			}
			leaders := 0
			for _, st := range sts {
				if st.IsLeader {
					leaders++
				}
				if st.Hash != sts[0].Hash || st.HashRevision != rev+1 || st.CompactRevision != 150 {
					t.Errorf("status of %s: %+v", st.Endpoint, st)
				}
			}
			if leaders != 1 {
				t.Errorf("status: %d leaders", leaders)
			}

			stdout, stderr, err = runTool(t, "compact", "--endpoints", eps, "--keep", "5", "--physical")
			if err != nil || stdout != fmt.Sprintf("compacted revision %d\n", rev+1-5) {
				t.Fatalf("compact --keep 5 at revision %d: %v %q %q", rev+1, err, stdout, stderr)
			}
			_, stderr, err = runTool(t, "compact", "--endpoints", eps, "100")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr, "mvcc: required revision has been compacted") {
				t.Errorf("compact below the compacted revision: %v %q", err, stderr)
			}
			_, stderr, err = runTool(t, "compact", "--endpoints", eps, "--keep", "1", "100")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage {
				t.Errorf("compact REV --keep: %v %q, want usage error", err, stderr)
			}

			// status fails when a member is down.
			dst.members[2].kill(syscall.SIGTERM)
			_, stderr, err = runTool(t, "status", "--endpoints", eps, "--command-timeout", "2s")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr, "PROBLEM: "+dst.members[2].clientURL) {
				t.Errorf("status with a member down: %v %q", err, stderr)
			}
		})
	}
}

// TestLogOutputsFileAndAudit runs a member logging to a file
// (--log-outputs) with rotation on, and finds the audit lines of auth
// changes in it, with the caller and without the password.
func TestLogOutputsFileAndAudit(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "member.log")
	c := newCluster(t, 1, "--log-level", "info", "--log-outputs", logFile, "--enable-log-rotation", "--bcrypt-cost", "4")
	eps := c.endpoints()
	mustEtcdctl(t, eps, "", "user", "add", "root:Sup3rSecretPw")
	mustEtcdctl(t, eps, "", "user", "grant-role", "root", "root")
	mustEtcdctl(t, eps, "", "auth", "enable")
	mustEtcdctl(t, eps, "", "--user", "root:Sup3rSecretPw", "role", "add", "ops")
	if out, err := etcdctl(t, eps, "", "role", "add", "anonymous"); err == nil {
		t.Fatalf("role add without credentials: %q", out)
	}
	c.stop() // flushes the log
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "Sup3rSecretPw") {
		t.Fatal("the password reached the log file")
	}
	type line struct {
		Level, Msg, Method, User, RoleName, UserName, RemoteAddr, Error string
	}
	var audit []line
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] != "audit: auth change" {
			continue
		}
		s := func(k string) string { v, _ := m[k].(string); return v }
		audit = append(audit, line{s("level"), s("msg"), s("method"), s("user"), s("role-name"), s("user-name"), s("remote-addr"), s("error")})
	}
	want := []line{
		{Level: "info", Method: "UserAdd", UserName: "root"},
		{Level: "info", Method: "UserGrantRole", UserName: "root", RoleName: "root"},
		{Level: "info", Method: "AuthEnable"},
		{Level: "info", Method: "RoleAdd", User: "root", RoleName: "ops"},
		{Level: "warn", Method: "RoleAdd", RoleName: "anonymous", Error: "etcdserver: user name is empty"},
	}
	if len(audit) != len(want) {
		t.Fatalf("audit lines %+v, want %d", audit, len(want))
	}
	for i, w := range want {
		g := audit[i]
		if g.Level != w.Level || g.Method != w.Method || g.User != w.User || g.RoleName != w.RoleName || g.UserName != w.UserName ||
			!strings.HasPrefix(g.RemoteAddr, "127.0.0.1:") || !strings.Contains(g.Error, w.Error) || (w.Error == "") != (g.Error == "") {
			t.Errorf("audit line %d: %+v, want %+v", i, g, w)
		}
	}
}

// TestLogRotationFlags: --log-outputs FILE --enable-log-rotation
// --log-rotation-config-json, parsed as the server parses them, rotate the
// file at maxsize.
func TestLogRotationFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.log")
	f, err := parseFlags(t, "--data-dir", t.TempDir(), "--log-outputs", path, "--enable-log-rotation",
		"--log-rotation-config-json", `{"maxsize": 1, "maxage": 0, "maxbackups": 2, "localtime": false, "compress": false}`)
	if err != nil {
		t.Fatal(err)
	}
	lg := f.cfg.Logger
	payload := strings.Repeat("y", 1024)
	for i := 0; i < 2600; i++ { // about 2.6 MB: two rotations at 1 MB
		lg.Info(payload)
	}
	lg.Sync()
	files, _ := filepath.Glob(filepath.Join(dir, "m*.log"))
	if len(files) != 3 {
		t.Fatalf("files after 2.6 MB with maxsize 1 MB, maxbackups 2: %v", files)
	}
	if _, err := parseFlags(t, "--data-dir", t.TempDir(), "--log-outputs", path+",stderr,"+path+"2", "--enable-log-rotation"); err == nil ||
		!strings.Contains(err.Error(), errLogRotationInvalidLogOutput.Error()) {
		t.Errorf("rotation with two files: %v", err)
	}
}
