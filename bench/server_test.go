package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The end-to-end tests run each scenario briefly against a real MetaStore
// process: $METASTORE_BIN, else one built from ../cmd/metastore for the
// tests, else (if that does not build) ../bin/metastore from `make build`.

var (
	tmpBinDir    string
	buildOnce    sync.Once
	metastoreBin string
	hasPprof     bool // the binary knows --enable-pprof
	buildErr     error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpBinDir != "" {
		os.RemoveAll(tmpBinDir)
	}
	os.Exit(code)
}

func metastoreBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		metastoreBin, buildErr = findOrBuildMetaStore()
		if buildErr == nil {
			help, _ := exec.Command(metastoreBin, "--help").CombinedOutput()
			hasPprof = strings.Contains(string(help), "enable-pprof")
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return metastoreBin
}

func findOrBuildMetaStore() (string, error) {
	if p := os.Getenv("METASTORE_BIN"); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "metastore-bench-test")
	if err != nil {
		return "", err
	}
	tmpBinDir = dir
	bin := filepath.Join(dir, "metastore")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/metastore").CombinedOutput()
	if err == nil {
		return bin, nil
	}
	if p, absErr := filepath.Abs("../bin/metastore"); absErr == nil {
		if _, statErr := os.Stat(p); statErr == nil {
			return p, nil // the tree does not build right now; test the tool against the last build
		}
	}
	return "", fmt.Errorf("go build ../cmd/metastore: %v\n%s", err, out)
}

// serverStartTimeout bounds the wait for a started member to answer.
const serverStartTimeout = 30 * time.Second

// startMetaStore starts a one-member MetaStore with pprof on free loopback
// ports and returns its client URL; the test's cleanup stops it.
func startMetaStore(t *testing.T) string {
	t.Helper()
	bin := metastoreBinary(t)
	ports := freePorts(t, 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "metastore.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--name", "bench", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer, "--log-level", "warn")
	if hasPprof {
		cmd.Args = append(cmd.Args, "--enable-pprof")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("metastore log:\n%s", log)
			}
		}
	})
	cli := testClient(t, client)
	deadline := time.Now().Add(serverStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return client
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("metastore exited before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("metastore at %s not serving after %v: %v", client, serverStartTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
