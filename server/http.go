package server

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/soheilhy/cmux"
	"go.etcd.io/etcd/pkg/v3/debugutil"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
)

// Client listeners serve gRPC and HTTP/1.1 on one port, as etcd's: a cmux
// sniffs each new connection and hands HTTP/2 connections whose first
// request has content-type application/grpc to the native gRPC server, and
// every other connection to an HTTP server (metrics, health, version, the
// JSON gateway, pprof). After the sniff the connection is the gRPC
// server's own: requests pay nothing for the sharing.
//
// Paths on the client listeners:
//
//	/metrics            Prometheus text format (metrics.go)
//	/health             etcd's {"health":"true","reason":""} (health.go)
//	/livez, /readyz     etcd's checks, ?verbose and ?exclude= (health.go)
//	/version            {"etcdserver":"3.6.16","etcdcluster":"3.6.0","storage":"3.6.0"}
//	/debug/vars         expvar, as etcd
//	/v3/...             etcd's JSON gateway (gateway.go); /v3beta/ rewritten to /v3/
//	/debug/pprof/...    only with --enable-pprof
//
// --listen-metrics-urls listeners serve /metrics and the health paths only.

// httpReadHeaderTimeout bounds reading one request's headers on the client
// and metrics listeners (etcd: 5 minutes on the client listeners).
const httpReadHeaderTimeout = 5 * time.Minute

// observability is a member's HTTP side, metrics and readiness.
type observability struct {
	s          *Server
	metrics    *serverMetrics
	grpcHealth *health.Server // set by grpc.go; follows readiness
	readyState atomic.Int32   // readyUnknown, readyYes, readyNo (observeLoop)

	gwConn   *grpc.ClientConn // the JSON gateway's connection to this member
	httpSrvs []*http.Server   // client and metrics HTTP servers
	// countInterval and rttInterval are minCountInterval and
	// peerRTTSampleInterval, shortened by tests.
	countInterval, rttInterval time.Duration

	// gate keeps Stop from closing the storage under an HTTP handler that
	// reads it: such handlers hold it shared (enter/leave), Stop takes it
	// exclusively and closes it for good.
	gate struct {
		sync.RWMutex
		closed bool
	}
}

func newObservability(s *Server) *observability {
	o := &observability{s: s, countInterval: minCountInterval, rttInterval: peerRTTSampleInterval}
	o.metrics = newServerMetrics(s)
	return o
}

// enter reports whether the server's storage may be read, and then holds
// it open until leave.
func (o *observability) enter() bool {
	o.gate.RLock()
	if o.gate.closed {
		o.gate.RUnlock()
		return false
	}
	return true
}

func (o *observability) leave() { o.gate.RUnlock() }

// serveClientListeners serves gRPC and HTTP on every client listener, the
// metrics listeners, and starts the observer loops. Serve calls it once
// the gRPC server is built.
func (s *Server) serveClientListeners() error {
	o := s.obs
	o.metrics.registerMemberID(s.memberID)
	o.metrics.grpc.initialize(s.grpc)

	mux := http.NewServeMux()
	o.handleMetricsAndHealth(mux)
	mux.HandleFunc("/version", serveVersion)
	mux.Handle("/debug/vars", expvar.Handler())
	if s.cfg.EnablePprof {
		for p, h := range debugutil.PProfHandlers() {
			mux.Handle(p, h)
		}
		s.lg.Info("pprof is enabled", zap.String("path", debugutil.HTTPPrefixPProf))
	}
	if s.cfg.EnableGRPCGateway {
		gw, err := s.newGateway()
		if err != nil {
			return err
		}
		mux.Handle("/v3/", gw)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v3beta/") { // etcd's backward compatibility
			r.URL.Path = strings.Replace(r.URL.Path, "/v3beta/", "/v3/", 1)
		}
		mux.ServeHTTP(w, r)
	})

	for _, ln := range s.clientLns {
		m := cmux.New(ln)
		grpcL := m.MatchWithWriters(cmux.HTTP2MatchHeaderFieldSendSettings("content-type", "application/grpc"))
		httpL := m.Match(cmux.Any())
		go s.serveClients(grpcL)
		o.serveHTTP(httpL, handler)
		go m.Serve() // ends when the listener closes (Stop)
	}

	metricsMux := http.NewServeMux()
	o.handleMetricsAndHealth(metricsMux)
	for _, u := range s.cfg.ListenMetricsURLs {
		ln, err := listen(u)
		if err != nil {
			return err
		}
		o.serveHTTP(ln, metricsMux)
		s.lg.Info("serving metrics", zap.String("address", u))
	}

	s.goAttached(func() { o.observeLoop(s.ctx) })
	s.goAttached(func() { o.countLoop(s.ctx) })
	return nil
}

// serveHTTP serves h on ln until stop.
func (o *observability) serveHTTP(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, ErrorLog: zap.NewStdLog(o.s.lg.Named("http"))}
	o.httpSrvs = append(o.httpSrvs, srv)
	go func() {
		err := srv.Serve(ln)
		select {
		case <-o.s.draining: // Stop closed the listener
		default:
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.s.lg.Error("HTTP listener failed", zap.String("address", ln.Addr().String()), zap.Error(err))
			}
		}
	}()
}

func (o *observability) handleMetricsAndHealth(mux *http.ServeMux) {
	reg := o.metrics.reg
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	o.handleHealth(mux)
}

// beginStop runs when Stop starts draining: readiness turns false and the
// JSON gateway's connection closes, ending the streams it holds open so the
// gRPC server's graceful stop does not wait for them. The HTTP servers keep
// answering /health and /readyz meanwhile.
func (o *observability) beginStop() {
	if o == nil {
		return
	}
	o.setReady(false, "stopping")
	if o.gwConn != nil {
		o.gwConn.Close()
	}
}

// stop closes the HTTP servers and waits for the handlers that read the
// server's storage; Stop closes the storage after it.
func (o *observability) stop() {
	if o == nil {
		return
	}
	for _, srv := range o.httpSrvs {
		srv.Close()
	}
	o.gate.Lock()
	o.gate.closed = true
	o.gate.Unlock()
}

// observeLoop samples the engine's statistics, follows leader changes and
// re-evaluates readiness every observeInterval, and observes the peers'
// round-trip times every rttInterval.
func (o *observability) observeLoop(ctx context.Context) {
	s := o.s
	tick := time.NewTicker(observeInterval)
	defer tick.Stop()
	rtt := time.NewTicker(o.rttInterval)
	defer rtt.Stop()
	var lastLeader uint64
	for {
		changed := s.node.LeaderChanges()
		if lead := s.node.Leader(); lead != 0 && lead != lastLeader {
			o.metrics.leaderChanges.Inc() // etcd counts a change to a new leader, not to none
		}
		lastLeader = s.node.Leader()
		o.updateReadiness()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			if st, err := s.db.Stats(); err == nil {
				o.metrics.engineStats.Store(&st)
			}
		case <-rtt.C:
			for id, st := range s.tr.Stats() {
				if st.RTT > 0 {
					o.metrics.peerRTTSec.WithLabelValues(fmt.Sprintf("%x", id)).Observe(st.RTT.Seconds())
				}
			}
		}
	}
}

// countLoop counts the keys and leases, at most as often as countInterval
// and so that counting takes at most 1/countCostFactor of the time.
func (o *observability) countLoop(ctx context.Context) {
	s := o.s
	for {
		start := time.Now()
		if n, err := s.countKeys(ctx); err == nil {
			o.metrics.keys.Store(n)
		} else if ctx.Err() == nil {
			s.lg.Warn("counting keys for etcd_debugging_mvcc_keys_total failed", zap.Error(err))
		}
		o.metrics.leases.Store(int64(len(s.kv.Leases())))
		wait := max(o.countInterval, countCostFactor*time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
