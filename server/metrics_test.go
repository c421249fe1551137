package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metastore/metastore/tuning"
)

// scrape reads /metrics at baseURL.
func scrape(t testing.TB, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s: %s", resp.Status, b)
	}
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// metricValue sums the values of the samples of name whose labels include
// every label in want (label pairs "k=v"); a histogram contributes its count.
func metricValue(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	var sum float64
next:
	for _, m := range mf.Metric {
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

func TestMetricsMoveUnderLoad(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	base := cfg.AdvertiseClientURLs[0]
	ctx := context.Background()

	before := scrape(t, base)
	const puts = 20
	for i := 0; i < puts; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("k0"), ">", 0)).
		Then(clientv3.OpPut("t1", "v"), clientv3.OpDelete("k1")).Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "k", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, base)

	for _, name := range []string{
		"etcd_server_has_leader", "etcd_server_is_leader",
	} {
		if v := metricValue(after, name); v != 1 {
			t.Errorf("%s = %v, want 1", name, v)
		}
	}
	increased := []struct {
		name   string
		labels []string
		by     float64
	}{
		{"etcd_mvcc_put_total", nil, puts + 1},
		{"etcd_mvcc_delete_total", nil, 1},
		{"etcd_mvcc_txn_total", nil, 1},
		{"etcd_mvcc_range_total", nil, 1},
		{"etcd_server_proposals_committed_total", nil, puts + 1},
		{"etcd_server_proposals_applied_total", nil, puts + 1},
		{"etcd_disk_wal_fsync_duration_seconds", nil, 1},
		{"etcd_disk_backend_commit_duration_seconds", nil, puts + 1},
		{"grpc_server_handled_total", []string{"grpc_method=Put", "grpc_code=OK"}, puts},
		{"grpc_server_started_total", []string{"grpc_method=Range"}, 1},
		{"etcd_network_client_grpc_received_bytes_total", nil, 1},
		{"etcd_network_client_grpc_sent_bytes_total", nil, 1},
	}
	for _, c := range increased {
		b, a := metricValue(before, c.name, c.labels...), metricValue(after, c.name, c.labels...)
		if a < 0 {
			t.Errorf("%s%v missing", c.name, c.labels)
			continue
		}
		if b < 0 {
			b = 0
		}
		if a-b < c.by {
			t.Errorf("%s%v went from %v to %v, want an increase of at least %v", c.name, c.labels, b, a, c.by)
		}
	}
	if v := metricValue(after, "etcd_server_proposals_pending"); v != 0 {
		t.Errorf("etcd_server_proposals_pending = %v after the load, want 0", v)
	}
	if v := metricValue(after, "etcd_mvcc_db_total_size_in_bytes"); v <= 0 {
		t.Errorf("etcd_mvcc_db_total_size_in_bytes = %v", v)
	}
	if v := metricValue(after, "etcd_server_id", "server_id="+fmt.Sprintf("%x", s.ID())); v != 1 {
		t.Errorf("etcd_server_id{server_id=%x} = %v", s.ID(), v)
	}
}

// TestMetricsCountKeysAndLeases checks the sampled gauges.
func TestMetricsCountKeysAndLeases(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	s, cli := startMember(t, cfg, func(s *Server) { s.obs.countInterval = 50 * time.Millisecond })
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Grant(ctx, 60); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		mfs := scrape(t, cfg.AdvertiseClientURLs[0])
		keys, leases := metricValue(mfs, "etcd_debugging_mvcc_keys_total"), metricValue(mfs, "metastore_leases")
		if keys != 2 || leases != 1 {
			return fmt.Errorf("keys_total %v, leases %v; want 2 and 1", keys, leases)
		}
		return nil
	})
}

// TestMetricsDocumented checks that every metric docs/METRICS.md names is
// exported, on a three-member cluster (peer metrics need peers) with
// --metrics=extensive.
func TestMetricsDocumented(t *testing.T) {
	names := documentedMetrics(t)
	if len(names) < 40 {
		t.Fatalf("docs/METRICS.md names only %d metrics", len(names))
	}
	checkDashboardMetrics(t, names)
	members := startCluster(t, 3, func(c *Config) { c.Metrics = MetricsExtensive },
		func(s *Server) { s.obs.rttInterval = 50 * time.Millisecond })
	cli, err := clientv3.New(clientv3.Config{Endpoints: members[0].cfg.AdvertiseClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		get(t, m.cfg.AdvertiseClientURLs[0]+"/readyz")
	}
	waitFor(t, 10*time.Second, func() error {
		var missing []string
		for _, m := range members {
			mfs := scrape(t, m.cfg.AdvertiseClientURLs[0])
			for _, n := range names {
				if mfs[n] == nil {
					missing = append(missing, m.cfg.Name+":"+n)
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("documented but not exported: %v", missing)
		}
		return nil
	})
}

// documentedMetrics returns the metric names in the first column of the
// tables of docs/METRICS.md.
func documentedMetrics(t *testing.T) []string {
	f, err := os.Open("../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile("^\\| `([a-z0-9_:]+)`")
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// checkDashboardMetrics checks that docs/grafana-dashboard.json queries
// documented metrics only.
func checkDashboardMetrics(t *testing.T, documented []string) {
	b, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]bool{}
	for _, n := range documented {
		doc[n] = true
	}
	re := regexp.MustCompile(`\b((?:etcd|metastore|grpc|process|go)_[a-z0-9_]+)\s*[{\[]`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		n := strings.TrimSuffix(m[1], "_bucket")
		if !doc[n] {
			t.Errorf("the dashboard queries %s, which docs/METRICS.md does not list", n)
		}
	}
}

// testMember is one member of startCluster's cluster.
type testMember struct {
	s   *Server
	cfg Config
}

// startCluster starts n members on free loopback ports, each with edit
// applied to its configuration and before called before it serves, and
// waits until they have a leader.
func startCluster(t *testing.T, n int, edit func(*Config), before func(*Server)) []testMember {
	t.Helper()
	ports := freeLoopbackPorts(t, 2*n)
	var initial []string
	for i := 0; i < n; i++ {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	members := make([]testMember, n)
	for i := range members {
		cfg := clusterMemberConfig(t, i, ports, strings.Join(initial, ","))
		if edit != nil {
			edit(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		if before != nil {
			before(s)
		}
		if err := s.Serve(); err != nil {
			t.Fatal(err)
		}
		members[i] = testMember{s: s, cfg: cfg}
	}
	waitFor(t, 20*time.Second, func() error {
		for _, m := range members {
			if m.s.node.Leader() == 0 {
				return fmt.Errorf("%s has no leader", m.cfg.Name)
			}
		}
		return nil
	})
	return members
}

// clusterMemberConfig is member i of a cluster whose client and peer ports
// are ports[2i] and ports[2i+1].
func clusterMemberConfig(t *testing.T, i int, ports []int, initialCluster string) Config {
	cfg := DefaultConfig()
	cfg.Name = fmt.Sprintf("m%d", i)
	cfg.DataDir = t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
	cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []string{client}, []string{client}
	cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peer}, []string{peer}
	cfg.InitialCluster = initialCluster
	cfg.Engine = tuning.LowMemory()
	cfg.Engine.Statistics = true
	cfg.Logger = zap.NewNop()
	return cfg
}

// startMember is startInProcess with before called before the member
// serves (to shorten the observer's intervals).
func startMember(t testing.TB, cfg Config, before func(*Server)) (*Server, *clientv3.Client) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before(s)
	if err := s.Serve(); err != nil {
		s.Stop()
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "ready")
		return err
	})
	return s, cli
}

// waitFor retries f until it succeeds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlowRequestLog sets --warning-apply-duration to 1ns: every request
// is slow, and is logged with etcd's message and fields.
func TestSlowRequestLog(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	cfg.WarningApplyDuration = time.Nanosecond
	core, logs := observer.New(zap.WarnLevel)
	cfg.Logger = zap.New(core)
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()
	if _, err := cli.Put(ctx, "slow", "value"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	var sawPut, sawRange bool
	for _, e := range logs.FilterMessage("apply request took too long").All() {
		f := e.ContextMap()
		for _, k := range []string{"took", "expected-duration", "prefix", "request", "response"} {
			if _, ok := f[k]; !ok {
				t.Errorf("slow request log %v lacks %q", f, k)
			}
		}
		if f["expected-duration"] != time.Nanosecond {
			t.Errorf("expected-duration %v", f["expected-duration"])
		}
		req, _ := f["request"].(string)
		switch {
		case f["prefix"] == "" && strings.Contains(req, "put:<key:\"slow\" value_size:5"):
			sawPut = true
			if resp, _ := f["response"].(string); !strings.HasPrefix(resp, "size:") {
				t.Errorf("put response field %q", resp)
			}
		case f["prefix"] == "read-only range " && strings.Contains(req, `key:"slow"`):
			sawRange = true
			if resp, _ := f["response"].(string); !strings.HasPrefix(resp, "range_response_count:1 size:") {
				t.Errorf("range response field %q", resp)
			}
		}
	}
	if !sawPut || !sawRange {
		t.Fatalf("slow put logged %v, slow range logged %v; logs: %v", sawPut, sawRange, logs.All())
	}
	if v := metricValue(scrape(t, cfg.AdvertiseClientURLs[0]), "etcd_server_slow_apply_total"); v < 2 {
		t.Errorf("etcd_server_slow_apply_total = %v, want >= 2", v)
	}
}
