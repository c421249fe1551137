package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeFile writes text to a new file in t's temp dir.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// parseFlags parses args as the server does.
func parseFlags(t *testing.T, args ...string) (*flags, error) {
	t.Helper()
	f := newFlags("metastore")
	err := f.parse(args)
	return f, err
}

func TestConfigEnvAndFlags(t *testing.T) {
	t.Setenv("ETCD_NAME", "from-env")
	t.Setenv("ETCD_SNAPSHOT_COUNT", "123")
	t.Setenv("ETCD_MAX_TXN_OPS", "10")
	t.Setenv("METASTORE_MAX_TXN_OPS", "20")
	t.Setenv("ETCD_HEARTBEAT_INTERVAL", "50")
	f, err := parseFlags(t, "--name", "from-flag", "--data-dir", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if c.Name != "from-flag" {
		t.Errorf("name %q: a flag must win over ETCD_NAME", c.Name)
	}
	if c.SnapshotCount != 123 {
		t.Errorf("snapshot-count %d, want 123 from ETCD_SNAPSHOT_COUNT", c.SnapshotCount)
	}
	if c.MaxTxnOps != 20 {
		t.Errorf("max-txn-ops %d, want 20: METASTORE_ wins over ETCD_", c.MaxTxnOps)
	}
	if c.HeartbeatInterval != 50*time.Millisecond {
		t.Errorf("heartbeat-interval %v, want 50ms", c.HeartbeatInterval)
	}
	t.Setenv("ETCD_SNAPSHOT_COUNT", "many")
	if _, err := parseFlags(t, "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "ETCD_SNAPSHOT_COUNT") {
		t.Errorf("bad env value: %v", err)
	}
}

const testConfigFile = `
name: from-file
listen-client-urls: http://127.0.0.1:23790,http://127.0.0.1:23791
advertise-client-urls: [http://127.0.0.1:23790]
listen-peer-urls: http://127.0.0.1:23800
initial-advertise-peer-urls: http://127.0.0.1:23800
heartbeat-interval: 50
election-timeout: 500
warning-apply-duration: 250000000
enable-pprof: true
engine-preset: low-memory
engine-options: |
  max-background-jobs = 3
client-transport-security:
  auto-tls: false
discovery-srv: example.com
`

// TestConfigFileReplacesFlagsAndEnv checks etcd's precedence: with a
// config file, other flags and the environment are ignored.
func TestConfigFileReplacesFlagsAndEnv(t *testing.T) {
	t.Setenv("ETCD_SNAPSHOT_COUNT", "123")
	t.Setenv("METASTORE_NAME", "from-env")
	path := writeFile(t, "etcd.yaml", testConfigFile+"data-dir: "+t.TempDir()+"\n")
	check := func(f *flags) {
		t.Helper()
		c := f.cfg
		if c.Name != "from-file" || c.SnapshotCount != 10000 {
			t.Errorf("name %q snapshot-count %d: flags and env must be ignored", c.Name, c.SnapshotCount)
		}
		if want := []string{"http://127.0.0.1:23790", "http://127.0.0.1:23791"}; !reflect.DeepEqual(c.ListenClientURLs, want) {
			t.Errorf("listen-client-urls %v", c.ListenClientURLs)
		}
		if len(c.AdvertiseClientURLs) != 1 {
			t.Errorf("advertise-client-urls %v", c.AdvertiseClientURLs)
		}
		if c.HeartbeatInterval != 50*time.Millisecond || c.ElectionTimeout != 500*time.Millisecond {
			t.Errorf("intervals %v %v", c.HeartbeatInterval, c.ElectionTimeout)
		}
		if c.WarningApplyDuration != 250*time.Millisecond || !c.EnablePprof {
			t.Errorf("warning-apply-duration %v enable-pprof %v", c.WarningApplyDuration, c.EnablePprof)
		}
		if c.Engine.MaxBackgroundJobs != 3 {
			t.Errorf("engine-options block not applied: max-background-jobs %d", c.Engine.MaxBackgroundJobs)
		}
		if !strings.Contains(strings.Join(f.warnings, "\n"), `unknown key "discovery-srv"`) {
			t.Errorf("warnings %q", f.warnings)
		}
	}
	f, err := parseFlags(t, "--config-file", path, "--name", "from-flag", "--snapshot-count", "7")
	if err != nil {
		t.Fatal(err)
	}
	check(f)
	t.Setenv("ETCD_CONFIG_FILE", path)
	if f, err = parseFlags(t); err != nil {
		t.Fatal(err)
	}
	check(f)
}

// TestConfigCheckReportsEveryViolation runs `metastore config check`.
func TestConfigCheckReportsEveryViolation(t *testing.T) {
	good := writeFile(t, "good.yaml", testConfigFile)
	if code, out := captureStderr(t, func() int { return configCheck(good) }); code != 0 {
		t.Fatalf("check good file: %d\n%s", code, out)
	}
	badKeys := writeFile(t, "bad-keys.yaml", "heartbeat-interval: soon\nmax-txn-ops: many\nenable-pprof: maybe\n")
	code, out := captureStderr(t, func() int { return configCheck(badKeys) })
	if code != 1 {
		t.Errorf("check bad keys: exit %d", code)
	}
	for _, want := range []string{"heartbeat-interval", "max-txn-ops", "enable-pprof"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	badValues := writeFile(t, "bad-values.yaml", "initial-cluster-state: sideways\nmetrics: everything\nelection-timeout: 100\n")
	code, out = captureStderr(t, func() int { return configCheck(badValues) })
	if code != 1 {
		t.Errorf("check bad values: exit %d", code)
	}
	for _, want := range []string{"--initial-cluster-state", "--metrics", "--election-timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

// TestConfigDumpRoundTrip loads what `config dump` writes.
func TestConfigDumpRoundTrip(t *testing.T) {
	f, err := parseFlags(t, "--name", "dumped", "--data-dir", t.TempDir(), "--engine-preset", "write-heavy",
		"--heartbeat-interval", "70", "--election-timeout", "700", "--warning-apply-duration", "3s", "--log-format", "console")
	if err != nil {
		t.Fatal(err)
	}
	text, err := f.dump()
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseFlags(t, "--config-file", writeFile(t, "dump.yaml", string(text)))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	a, b := f.cfg, g.cfg
	a.Logger, b.Logger = nil, nil
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip through config dump changed the config:\n%+v\n%+v", a, b)
	}
	if g.log.format != "console" {
		t.Errorf("log-format %q", g.log.format)
	}
}

// captureStderr runs f with os.Stderr redirected and returns its result and
// what it wrote.
func captureStderr(t *testing.T, f func() int) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	code := f()
	os.Stderr = old
	w.Close()
	return code, <-done
}
