package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"
	"go.uber.org/zap"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/metastore/metastore/raftlog"
)

// Health endpoints answer as etcd v3.6's (server/etcdserver/api/etcdhttp/
// health.go), so that probes, load balancers and scripts written for etcd
// work unchanged:
//
//	GET /health                    {"health":"true","reason":""}, 503 and
//	                               {"health":"false","reason":"..."} when an
//	                               alarm is active (unless ?exclude=NOSPACE
//	                               names it), there is no leader (unless
//	                               ?serializable=true) or a read fails
//	GET /livez, /readyz            "ok\n"; ?verbose lists each check as
//	                               "[+]name ok"; a failing check answers 503
//	                               with "[-]name failed: reason"; ?exclude=name
//	                               skips a check
//	GET /livez/<check>, /readyz/<check>   one check
//
// Readiness also fails fast, in linearizable_read, while the member has no
// leader or its applied index trails the committed index by more than
// readyMaxApplyLagEntries (catching up after a restart or a partition); a
// linearizable read would only time out then. The gRPC health service
// reports SERVING exactly while the member is ready (observeLoop): grpc.go sets
// observability.grpcHealth.

// readyMaxApplyLagEntries is how far the applied index may trail the
// committed index on a ready member: etcd's maxGapBetweenApplyAndCommitIndex,
// beyond which the member refuses proposals anyway.
const readyMaxApplyLagEntries = raftlog.DefaultMaxApplyGapEntries

// etcd's health check names.
const (
	checkSerializableRead = "serializable_read"
	checkLinearizableRead = "linearizable_read"
	checkDataCorruption   = "data_corruption"
	checkNonLearner       = "non_learner"
)

// healthMetrics are etcd's health check counters.
type healthMetrics struct {
	success, failed prometheus.Counter
	gauge           *prometheus.GaugeVec
	counter         *prometheus.CounterVec
}

func newHealthMetrics(reg *prometheus.Registry) *healthMetrics {
	h := &healthMetrics{
		success: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "server", Name: "health_success",
			Help: "The total number of successful health checks"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "server", Name: "health_failures",
			Help: "The total number of failed health checks"}),
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "healthcheck",
			Help: "The result of each kind of healthcheck."}, []string{"type", "name"}),
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "server", Name: "healthchecks_total",
			Help: "The total number of each kind of healthcheck."}, []string{"type", "name", "status"}),
	}
	reg.MustRegister(h.success, h.failed, h.gauge, h.counter)
	return h
}

// healthStatus is etcd's /health body.
type healthStatus struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// healthCheck is one named /livez or /readyz check.
type healthCheck struct {
	name  string
	check func(ctx context.Context) error
}

func (o *observability) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("/health", o.serveHealth)
	o.handleChecks(mux, "livez", []healthCheck{
		{checkSerializableRead, o.readCheck(true)},
	})
	o.handleChecks(mux, "readyz", []healthCheck{
		{checkDataCorruption, o.corruptionCheck},
		{checkLinearizableRead, o.linearizableCheck},
		{checkNonLearner, o.learnerCheck},
		{checkSerializableRead, o.readCheck(true)},
	})
}

func (o *observability) serveHealth(w http.ResponseWriter, r *http.Request) {
	lg := o.s.lg
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	h := o.health(r.Context(), querySet(r, "exclude"), r.URL.Query().Get("serializable") == "true")
	d, _ := json.Marshal(h)
	if h.Health != "true" {
		o.metrics.health.failed.Inc()
		http.Error(w, string(d), http.StatusServiceUnavailable)
		lg.Warn("/health error", zap.String("output", string(d)), zap.Int("status-code", http.StatusServiceUnavailable))
		return
	}
	o.metrics.health.success.Inc()
	w.WriteHeader(http.StatusOK)
	w.Write(d)
}

// health is etcd's /health verdict: alarms, then the leader, then a read.
func (o *observability) health(ctx context.Context, excludedAlarms map[string]bool, serializable bool) healthStatus {
	if !o.enter() {
		return healthStatus{Health: "false", Reason: "STOPPING"}
	}
	defer o.leave()
	s := o.s
	for _, a := range s.alarms.list() {
		if excludedAlarms[a.Alarm.String()] {
			continue
		}
		reason := "ALARM UNKNOWN"
		switch a.Alarm {
		case pb.AlarmType_NOSPACE:
			reason = "ALARM NOSPACE"
		case pb.AlarmType_CORRUPT:
			reason = "ALARM CORRUPT"
		}
		s.lg.Warn("serving /health false due to an alarm", zap.String("alarm", a.String()))
		return healthStatus{Health: "false", Reason: reason}
	}
	if !serializable && s.node.Leader() == 0 {
		s.lg.Warn("serving /health false; no leader")
		return healthStatus{Health: "false", Reason: "RAFT NO LEADER"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if _, err := (kvServer{s}).Range(ctx, &pb.RangeRequest{Key: []byte{0}, KeysOnly: true, Limit: 1, Serializable: serializable}); err != nil {
		s.lg.Warn("serving /health false; Range fails", zap.Error(err))
		return healthStatus{Health: "false", Reason: fmt.Sprintf("RANGE ERROR:%s", err)}
	}
	return healthStatus{Health: "true"}
}

// handleChecks installs /<kind> (every check but ?exclude= ones) and
// /<kind>/<check>.
func (o *observability) handleChecks(mux *http.ServeMux, kind string, checks []healthCheck) {
	sort.Slice(checks, func(i, j int) bool { return checks[i].name < checks[j].name })
	root := "/" + kind
	mux.HandleFunc(root, func(w http.ResponseWriter, r *http.Request) {
		excluded := querySet(r, "exclude")
		var run []healthCheck
		for _, c := range checks {
			if excluded[c.name] {
				delete(excluded, c.name)
				continue
			}
			run = append(run, c)
		}
		if len(excluded) > 0 {
			// As etcd: excluding an unknown check does not fail the request.
			o.s.lg.Warn("some health checks cannot be excluded", zap.Any("missing-health-checks", excluded))
		}
		o.serveChecks(w, r, kind, run)
	})
	for _, c := range checks {
		mux.HandleFunc(path.Join(root, c.name), func(w http.ResponseWriter, r *http.Request) {
			o.serveChecks(w, r, kind, []healthCheck{c})
		})
	}
}

func (o *observability) serveChecks(w http.ResponseWriter, r *http.Request, kind string, checks []healthCheck) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	var out bytes.Buffer
	failed := false
	for _, c := range checks {
		status := "success"
		if err := o.runCheck(r.Context(), c); err != nil {
			fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
			failed, status = true, "error"
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", c.name)
		}
		val := 0.0
		if status == "success" {
			val = 1
		}
		o.metrics.health.gauge.WithLabelValues(kind, c.name).Set(val)
		o.metrics.health.counter.WithLabelValues(kind, c.name, status).Inc()
	}
	if failed {
		http.Error(w, out.String(), http.StatusServiceUnavailable)
		o.s.lg.Error("Health check error", zap.String("path", r.URL.Path), zap.String("reason", out.String()), zap.Int("status-code", http.StatusServiceUnavailable))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		w.Write(out.Bytes())
	}
	fmt.Fprint(w, "ok\n")
}

func (o *observability) runCheck(ctx context.Context, c healthCheck) error {
	if !o.enter() {
		return errStopped
	}
	defer o.leave()
	return c.check(ctx)
}

// readCheck reads one key, as etcd's serializable_read and linearizable_read.
func (o *observability) readCheck(serializable bool) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, o.s.cfg.RequestTimeout)
		defer cancel()
		_, err := (kvServer{o.s}).Range(ctx, &pb.RangeRequest{Key: []byte{0}, KeysOnly: true, Limit: 1, Serializable: serializable})
		return err
	}
}

// linearizableCheck is etcd's linearizable_read, failing fast when the
// member is not ready (notReadyReason) instead of timing out.
func (o *observability) linearizableCheck(ctx context.Context) error {
	if reason := o.notReadyReason(); reason != "" {
		return fmt.Errorf("%s", reason)
	}
	return o.readCheck(false)(ctx)
}

func (o *observability) corruptionCheck(context.Context) error {
	if o.s.alarms.active(pb.AlarmType_CORRUPT) {
		return fmt.Errorf("alarm activated: %s", pb.AlarmType_CORRUPT)
	}
	return nil
}

func (o *observability) learnerCheck(context.Context) error {
	if m := o.s.cluster.Member(o.s.memberID); m != nil && m.IsLearner {
		return fmt.Errorf("not supported for learner")
	}
	return nil
}

// notReadyReason says why the member cannot serve linearizable requests
// now, or "" when it can.
func (o *observability) notReadyReason() string {
	s := o.s
	select {
	case <-s.draining:
		return "etcdserver: server stopped"
	default:
	}
	if s.node.Leader() == 0 {
		return "etcdserver: no leader"
	}
	committed, applied := s.node.Metrics().CommittedIndex, s.applied.Load()
	if committed > applied+readyMaxApplyLagEntries {
		return fmt.Sprintf("etcdserver: catching up: applied index %d is %d entries behind the committed index %d",
			applied, committed-applied, committed)
	}
	if s.alarms.active(pb.AlarmType_CORRUPT) {
		return "alarm activated: CORRUPT"
	}
	return ""
}

// updateReadiness re-evaluates readiness and sets the gRPC health status
// on a change.
func (o *observability) updateReadiness() {
	reason := o.notReadyReason()
	o.setReady(reason == "", reason)
}

// Readiness states of observability.readyState.
const (
	readyUnknown int32 = iota
	readyYes
	readyNo
)

func (o *observability) setReady(ready bool, reason string) {
	state := readyNo
	if ready {
		state = readyYes
	}
	if o.readyState.Swap(state) == state || o.grpcHealth == nil {
		return
	}
	if ready {
		o.s.lg.Info("grpc service status changed", zap.String("service", ""), zap.String("status", healthpb.HealthCheckResponse_SERVING.String()))
		o.grpcHealth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		return
	}
	o.s.lg.Warn("grpc service status changed", zap.String("service", ""),
		zap.String("status", healthpb.HealthCheckResponse_NOT_SERVING.String()), zap.String("reason", reason))
	o.grpcHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
}

// The versions /version reports besides Version, as etcd 3.6.16 does.
const (
	clusterVersion = "3.6.0"
	storageVersion = "3.6.0"
)

// serveVersion answers /version as etcd 3.6.
func serveVersion(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(&version.Versions{Server: Version, Cluster: clusterVersion, Storage: storageVersion})
	w.Write(b)
}

// querySet returns the non-empty values of a repeated query parameter.
func querySet(r *http.Request, name string) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.URL.Query()[name] {
		if v != "" {
			out[v] = true
		}
	}
	return out
}
