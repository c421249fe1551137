package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// get returns the status code and body of GET url.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func grpcHealthStatus(t testing.TB, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func TestHealthHealthy(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	base := cfg.AdvertiseClientURLs[0]

	tests := []struct {
		path       string
		code       int
		body       string
		bodyPrefix bool
	}{
		{"/health", 200, `{"health":"true","reason":""}`, false},
		{"/health?serializable=true", 200, `{"health":"true","reason":""}`, false},
		{"/livez", 200, "ok\n", false},
		{"/readyz", 200, "ok\n", false},
		{"/livez?verbose", 200, "[+]serializable_read ok\nok\n", false},
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]linearizable_read ok\n[+]non_learner ok\n[+]serializable_read ok\nok\n", false},
		{"/readyz?verbose&exclude=linearizable_read&exclude=no_such_check", 200, "[+]data_corruption ok\n[+]non_learner ok\n[+]serializable_read ok\nok\n", false},
		{"/readyz/linearizable_read?verbose", 200, "[+]linearizable_read ok\nok\n", false},
		{"/version", 200, `{"etcdserver":"3.6.16","etcdcluster":"3.6.0","storage":"3.6.0"}`, false},
	}
	for _, tc := range tests {
		code, body := get(t, base+tc.path)
		if code != tc.code || body != tc.body {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if st := grpcHealthStatus(t, s.ClientAddrs()[0]); st != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health %v, want SERVING", st)
		}
		return nil
	})
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
}

// TestHealthNoLeader starts one member of a three-member configuration
// alone: it never has a leader.
func TestHealthNoLeader(t *testing.T) {
	ports := freeLoopbackPorts(t, 6)
	initial := fmt.Sprintf("m0=http://127.0.0.1:%d,m1=http://127.0.0.1:%d,m2=http://127.0.0.1:%d", ports[1], ports[3], ports[5])
	cfg := clusterMemberConfig(t, 0, ports, initial)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	base := cfg.AdvertiseClientURLs[0]
	waitFor(t, 5*time.Second, func() error {
		if st := grpcHealthStatus(t, s.ClientAddrs()[0]); st != healthpb.HealthCheckResponse_NOT_SERVING {
			return fmt.Errorf("gRPC health %v, want NOT_SERVING", st)
		}
		return nil
	})
	if code, body := get(t, base+"/health"); code != 503 || body != `{"health":"false","reason":"RAFT NO LEADER"}`+"\n" {
		t.Errorf("/health = %d %q", code, body)
	}
	// serializable skips the leader check and reads locally, as etcd.
	if code, body := get(t, base+"/health?serializable=true"); code != 200 || body != `{"health":"true","reason":""}` {
		t.Errorf("/health?serializable=true = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "[-]linearizable_read failed: etcdserver: no leader\n") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz?exclude=linearizable_read"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz?exclude=linearizable_read = %d %q", code, body)
	}
	if code, body := get(t, base+"/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez = %d %q", code, body)
	}
}

func TestHealthNoSpaceAlarm(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	cfg.QuotaBackendBytes = 1
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	base := cfg.AdvertiseClientURLs[0]
	cli.Put(context.Background(), "k", "v") // over quota: raises NOSPACE
	waitFor(t, 10*time.Second, func() error {
		if !s.alarms.active(pb.AlarmType_NOSPACE) {
			return fmt.Errorf("NOSPACE not raised")
		}
		return nil
	})
	if code, body := get(t, base+"/health"); code != 503 || body != `{"health":"false","reason":"ALARM NOSPACE"}`+"\n" {
		t.Errorf("/health = %d %q", code, body)
	}
	if code, body := get(t, base+"/health?exclude=NOSPACE"); code != 200 || body != `{"health":"true","reason":""}` {
		t.Errorf("/health?exclude=NOSPACE = %d %q", code, body)
	}
	if code, body := get(t, base+"/health?exclude=CORRUPT"); code != 503 {
		t.Errorf("/health?exclude=CORRUPT = %d %q", code, body)
	}
	// NOSPACE does not make a member unready: reads still work.
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q", code, body)
	}
}

func TestHealthMetricsListenerAndPprof(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", freeLoopbackPorts(t, 1)[0])
	cfg.ListenMetricsURLs = []string{metricsURL}
	cfg.EnablePprof = true
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	for _, tc := range []struct {
		url  string
		code int
	}{
		{metricsURL + "/metrics", 200},
		{metricsURL + "/health", 200},
		{metricsURL + "/readyz", 200},
		{metricsURL + "/version", 404},
		{metricsURL + "/debug/pprof/", 404},
		{cfg.AdvertiseClientURLs[0] + "/debug/pprof/", 200},
	} {
		if code, body := get(t, tc.url); code != tc.code {
			t.Errorf("GET %s = %d, want %d (%.100q)", tc.url, code, tc.code, body)
		}
	}
	var h healthStatus
	_, body := get(t, metricsURL+"/health")
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Health != "true" {
		t.Errorf("metrics listener /health = %q (%v)", body, err)
	}
}

func TestPprofOffByDefault(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	if code, _ := get(t, cfg.AdvertiseClientURLs[0]+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without --enable-pprof: %d, want 404", code)
	}
}
