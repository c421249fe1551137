package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A cluster is 1 or 3 metastore processes on loopback, started from the
// failpoints build, with the transport fault layer on (the peer port
// serves /debug/faults and /debug/failpoints).

// Bounds of the cluster's life cycle.
const (
	// memberReadyTimeout bounds how long a started member may take to
	// answer a linearizable read; it is the restart bound the suite
	// asserts (see docs/RELIABILITY.md).
	memberReadyTimeout = 20 * time.Second
	// memberExitTimeout bounds how long a signalled member may take to exit.
	memberExitTimeout = 30 * time.Second
	// electionTimeoutMs and heartbeatMs are the members' raft timers.
	electionTimeoutMs = 1000
	heartbeatMs       = 100
	// snapshotCount and snapshotCatchUpEntries make the raft log truncate
	// often, so a follower cut off for a few seconds needs a snapshot.
	snapshotCount          = 200
	snapshotCatchUpEntries = 50
	// httpTimeout bounds one call to a member's debug endpoints.
	httpTimeout = 2 * time.Second
)

type member struct {
	name      string
	binary    string
	dataDir   string
	clientURL string
	peerURL   string
	logPath   string
	gen       atomic.Int32 // replacements so far

	mu struct {
		sync.Mutex
		cmd      *exec.Cmd
		exited   chan struct{}
		exitErr  error
		expected bool // the suite caused the exit (kill or failpoint)
	}
}

type cluster struct {
	dir     string
	members []*member
	lg      *zap.Logger
	// initial is the --initial-cluster of the first start.
	initial string
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	var ports []int
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startCluster starts n members under dir and waits until each serves.
func startCluster(binary, dir string, n int) (*cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	var initial []string
	for i := 0; i < n; i++ {
		m := &member{
			name:      fmt.Sprintf("m%d", i+1),
			binary:    binary,
			dataDir:   filepath.Join(dir, fmt.Sprintf("m%d", i+1)),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			logPath:   filepath.Join(dir, fmt.Sprintf("m%d.log", i+1)),
		}
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.members {
		if err := m.start(c.initial, "new"); err != nil {
			c.stop()
			return nil, err
		}
	}
	for _, m := range c.members {
		if _, err := m.waitServing(memberReadyTimeout); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (m *member) start(initialCluster, state string) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %s (gen %d) at %s\n", m.name, m.gen.Load(), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(m.binary,
		"--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", initialCluster, "--initial-cluster-state", state,
		"--initial-cluster-token", "robustness",
		"--election-timeout", strconv.Itoa(electionTimeoutMs), "--heartbeat-interval", strconv.Itoa(heartbeatMs),
		"--snapshot-count", strconv.Itoa(snapshotCount),
		"--experimental-snapshot-catchup-entries", strconv.Itoa(snapshotCatchUpEntries),
		"--experimental-peer-faults", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.mu.cmd, m.mu.exited, m.mu.exitErr, m.mu.expected = cmd, exited, nil, false
	m.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		m.mu.Lock()
		m.mu.exitErr = err
		m.mu.Unlock()
		close(exited)
	}()
	return nil
}

// running reports whether the member's process is alive.
func (m *member) running() bool {
	m.mu.Lock()
	exited := m.mu.exited
	m.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// expectExit marks the coming exit as the suite's doing.
func (m *member) expectExit() {
	m.mu.Lock()
	m.mu.expected = true
	m.mu.Unlock()
}

// unexpectedExit reports an exit the suite did not cause.
func (m *member) unexpectedExit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.exited == nil || m.mu.expected {
		return nil
	}
	select {
	case <-m.mu.exited:
		return fmt.Errorf("%s exited on its own: %v (log %s)", m.name, m.mu.exitErr, m.logPath)
	default:
		return nil
	}
}

// signal sends sig to the process.
func (m *member) signal(sig syscall.Signal) error {
	m.mu.Lock()
	cmd := m.mu.cmd
	m.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return errors.New("not started")
	}
	return cmd.Process.Signal(sig)
}

// waitExit waits for the process to exit, at most timeout.
func (m *member) waitExit(timeout time.Duration) error {
	m.mu.Lock()
	exited := m.mu.exited
	m.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", m.name, timeout)
	}
}

// kill sends sig and waits for the exit.
func (m *member) kill(sig syscall.Signal) error {
	if !m.running() {
		return nil
	}
	m.expectExit()
	if err := m.signal(sig); err != nil {
		return err
	}
	if err := m.waitExit(memberExitTimeout); err != nil {
		m.signal(syscall.SIGKILL)
		m.waitExit(memberExitTimeout)
		return err
	}
	return nil
}

// client is a client of this member alone.
func (m *member) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

// waitServing waits until the member answers a linearizable read and
// returns how long that took.
func (m *member) waitServing(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	cli, err := m.client()
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "robustness-readiness")
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		if !m.running() {
			return 0, fmt.Errorf("%s exited before serving (log %s)", m.name, m.logPath)
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s not serving within %v: %v (log %s)", m.name, timeout, err, m.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// status is the member's view: its ID, the leader's and its revision.
func (m *member) status() (id, leader uint64, rev int64, err error) {
	cli, err := m.client()
	if err != nil {
		return 0, 0, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.clientURL)
	if err != nil {
		return 0, 0, 0, err
	}
	return st.Header.MemberId, st.Leader, st.Header.Revision, nil
}

// leader returns the index of the member a running majority reports as
// leader, waiting at most timeout for one.
func (c *cluster) leader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		for i, m := range c.members {
			if !m.running() {
				continue
			}
			id, lead, _, err := m.status()
			if err == nil && id == lead {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no leader within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memberID returns the member's raft ID.
func (m *member) memberID() (uint64, error) {
	id, _, _, err := m.status()
	return id, err
}

// debug calls one of the member's peer-port debug endpoints.
func (m *member) debug(method, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, m.peerURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, body)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// fault posts one transport fault (server/faults.go).
func (m *member) fault(query string) error {
	return m.debug(http.MethodPost, "/debug/faults?"+query, nil)
}

// faultStatus is the part of GET /debug/faults the suite reads.
type faultStatus struct {
	RaftLogFirstIndex uint64 `json:"raftLogFirstIndex"`
	Peers             map[string]struct {
		SnapshotsSent     uint64 `json:"snapshotsSent"`
		SnapshotsReceived uint64 `json:"snapshotsReceived"`
	} `json:"peers"`
}

func (m *member) faults() (faultStatus, error) {
	var st faultStatus
	err := m.debug(http.MethodGet, "/debug/faults", &st)
	return st, err
}

// setFailpoint sets one failpoint of the running process.
func (m *member) setFailpoint(name, term string) error {
	return m.debug(http.MethodPost, "/debug/failpoints?name="+name+"&term="+term, nil)
}

// failpointHits reads the failpoints' hit counts.
func (m *member) failpointHits() (map[string]uint64, error) {
	var st struct {
		Hits map[string]uint64 `json:"hits"`
	}
	err := m.debug(http.MethodGet, "/debug/failpoints", &st)
	return st.Hits, err
}

// endpoints are every member's client URL.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// stop ends every member (SIGTERM, then SIGKILL if it hangs).
func (c *cluster) stop() {
	for _, m := range c.members {
		m.signal(syscall.SIGCONT) // a paused member cannot exit
		m.kill(syscall.SIGTERM)
	}
}

// restart starts a stopped member again on its data dir.
func (c *cluster) restart(m *member) error {
	return m.start(c.initial, "new")
}
