package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The end-to-end tests run the real metastore binary as separate processes
// on 127.0.0.1 and talk to them with clientv3 and the real etcdctl.

var (
	binDir       string // holds the metastore binary built for the tests
	etcdBinDir   string // holds etcd and etcdctl (scripts/etcd.sh)
	buildOnce    sync.Once
	buildErr     error
	metastoreBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "metastore-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries builds metastore and locates etcdctl, once per test binary.
func binaries(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		metastoreBin = filepath.Join(binDir, "metastore")
		out, err := exec.Command("go", "build", "-o", metastoreBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		etcdBinDir = os.Getenv("ETCD_BIN_DIR")
		if etcdBinDir == "" {
			out, err := exec.Command("bash", "../../scripts/etcd.sh").Output()
			if err != nil {
				buildErr = fmt.Errorf("scripts/etcd.sh: %v", err)
				return
			}
			etcdBinDir = strings.TrimSpace(string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	var lns []net.Listener
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln) // held open until the end: the kernel will not offer it again meanwhile
		port := ln.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue // closed by the test it went to, and offered again
		}
		handedOut.ports[port] = true
		ports = append(ports, port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// handedOut are the ports freePorts returned in this process: parallel
// tests each start members on theirs, and the kernel offers a port closed
// by one test to the next listener on port 0, so one test's member found
// another's on its port ("address already in use", "cluster ID mismatch").
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// member is one metastore process.
type member struct {
	t         testing.TB
	name      string
	dataDir   string
	clientURL string
	peerURL   string
	extraArgs []string
	cmd       *exec.Cmd
	log       *syncBuffer
	exited    chan struct{}
	exitErr   error
	initialCl string
	clusterSt string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testCluster is a set of members started together.
type testCluster struct {
	t       testing.TB
	members []*member
}

// newCluster starts n members with fresh data directories.
func newCluster(t testing.TB, n int, extraArgs ...string) *testCluster {
	t.Helper()
	binaries(t)
	ports := freePorts(t, 2*n)
	base := t.TempDir()
	c := &testCluster{t: t}
	var initial []string
	for i := 0; i < n; i++ {
		m := &member{
			t:         t,
			name:      fmt.Sprintf("m%d", i+1),
			dataDir:   filepath.Join(base, fmt.Sprintf("m%d", i+1)),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			extraArgs: extraArgs,
			clusterSt: "new",
		}
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.initialCl = strings.Join(initial, ",")
		m.start()
	}
	t.Cleanup(c.stop)
	c.waitReady()
	return c
}

func (m *member) args() []string {
	return append([]string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.initialCl,
		"--initial-cluster-state", m.clusterSt,
		"--initial-cluster-token", "e2e",
		"--log-level", "warn",
	}, m.extraArgs...)
}

func (m *member) start() {
	m.t.Helper()
	m.log = &syncBuffer{}
	m.cmd = exec.Command(metastoreBin, m.args()...)
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

// kill sends sig and waits for the process to exit.
func (m *member) kill(sig syscall.Signal) {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		m.t.Errorf("%s did not exit within 30s of %v; log:\n%s", m.name, sig, m.log.String())
	}
}

func (m *member) client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *testCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

func (c *testCluster) client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitReady waits until every running member answers a linearizable read.
func (c *testCluster) waitReady() {
	c.t.Helper()
	for _, m := range c.members {
		m.waitReady()
	}
}

func (m *member) waitReady() {
	m.t.Helper()
	cli := m.client(m.t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "readiness-probe")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-m.exited:
			m.t.Fatalf("%s exited (%v) before becoming ready; log:\n%s", m.name, m.exitErr, m.log.String())
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("%s not ready after 30s: %v; log:\n%s", m.name, err, m.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *testCluster) stop() {
	for _, m := range c.members {
		m.kill(syscall.SIGTERM)
		if c.t.Failed() {
			c.t.Logf("log of %s:\n%s", m.name, m.log.String())
		}
	}
}

// leader returns the member that reports itself leader.
func (c *testCluster) leader(t testing.TB) *member {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.members {
			select {
			case <-m.exited:
				continue
			default:
			}
			cli := m.client(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.clientURL)
			cancel()
			if err == nil && st.Leader == st.Header.MemberId {
				return m
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no leader within 15s")
	return nil
}

// etcdctl runs the real etcdctl against endpoints with the given stdin and
// returns its combined output.
func etcdctl(t testing.TB, endpoints []string, stdin string, args ...string) (string, error) {
	t.Helper()
	binaries(t)
	full := append([]string{"--endpoints", strings.Join(endpoints, ","), "--dial-timeout", "5s", "--command-timeout", "15s"}, args...)
	cmd := exec.Command(filepath.Join(etcdBinDir, "etcdctl"), full...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// Errors are printed on stderr; return them with the output.
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// mustEtcdctl is etcdctl that fails the test on error.
func mustEtcdctl(t testing.TB, endpoints []string, stdin string, args ...string) string {
	t.Helper()
	out, err := etcdctl(t, endpoints, stdin, args...)
	if err != nil {
		t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
