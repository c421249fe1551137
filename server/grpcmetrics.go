package server

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcServerMetrics are go-grpc-middleware's grpc_server_* metrics (the
// ones etcd exports: providers/prometheus ServerMetrics, same names, help
// texts, labels and buckets, every registered method's series created at
// start), with the children of every registered method looked up once
// instead of on every call: the middleware's interceptor hashed the label
// values of four metrics per call and allocated a reporter for each.
type grpcServerMetrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	handling *prometheus.HistogramVec // nil unless --metrics=extensive

	// methods maps the full name of every method registered when
	// initialize ran to its children; read-only afterwards.
	methods atomic.Pointer[map[string]*grpcMethodMetrics]
}

// grpcCodes are the codes whose grpc_server_handled_total series exist
// from the start (go-grpc-middleware's interceptors.AllCodes).
var grpcCodes = []codes.Code{
	codes.OK, codes.Canceled, codes.Unknown, codes.InvalidArgument, codes.DeadlineExceeded, codes.NotFound,
	codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted,
	codes.FailedPrecondition, codes.Aborted, codes.OutOfRange, codes.Unimplemented, codes.Internal,
	codes.Unavailable, codes.DataLoss,
}

// grpc_type label values.
const (
	grpcTypeUnary        = "unary"
	grpcTypeClientStream = "client_stream"
	grpcTypeServerStream = "server_stream"
	grpcTypeBidiStream   = "bidi_stream"
)

func newGRPCServerMetrics(handlingHistogram bool) *grpcServerMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	m := &grpcServerMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
	}
	if handlingHistogram {
		m.handling = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *grpcServerMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.started.Describe(ch)
	m.handled.Describe(ch)
	m.received.Describe(ch)
	m.sent.Describe(ch)
	if m.handling != nil {
		m.handling.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *grpcServerMetrics) Collect(ch chan<- prometheus.Metric) {
	m.started.Collect(ch)
	m.handled.Collect(ch)
	m.received.Collect(ch)
	m.sent.Collect(ch)
	if m.handling != nil {
		m.handling.Collect(ch)
	}
}

// grpcMethodMetrics are one method's children.
type grpcMethodMetrics struct {
	typ, service, method string
	m                    *grpcServerMetrics

	started, received, sent prometheus.Counter
	handled                 [codes.Unauthenticated + 1]prometheus.Counter // by code value: grpcCodes are 0..16
	handling                prometheus.Observer                           // nil without the histogram
}

func (m *grpcServerMetrics) newMethod(typ, fullMethod string) *grpcMethodMetrics {
	service, method := splitFullMethod(fullMethod)
	mm := &grpcMethodMetrics{typ: typ, service: service, method: method, m: m}
	mm.started = m.started.WithLabelValues(typ, service, method)
	mm.received = m.received.WithLabelValues(typ, service, method)
	mm.sent = m.sent.WithLabelValues(typ, service, method)
	if m.handling != nil {
		mm.handling = m.handling.WithLabelValues(typ, service, method)
	}
	for _, c := range grpcCodes {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, method, c.String())
	}
	return mm
}

// initialize creates the series of every method registered on srv, as
// the middleware's InitializeMetrics, and keeps their children.
func (m *grpcServerMetrics) initialize(srv interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}) {
	methods := map[string]*grpcMethodMetrics{}
	for service, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			full := "/" + service + "/" + mi.Name
			methods[full] = m.newMethod(methodType(mi.IsClientStream, mi.IsServerStream), full)
		}
	}
	m.methods.Store(&methods)
}

// method returns the children of fullMethod, of type typ. A method that
// was not registered at initialize (none is served) gets new ones.
func (m *grpcServerMetrics) method(typ, fullMethod string) *grpcMethodMetrics {
	if methods := m.methods.Load(); methods != nil {
		if mm := (*methods)[fullMethod]; mm != nil && mm.typ == typ {
			return mm
		}
	}
	return m.newMethod(typ, fullMethod)
}

// done counts a finished call: its code (from err as the middleware reads
// it) and, with the histogram, its handling time since start.
func (mm *grpcMethodMetrics) done(err error, start time.Time) {
	code := codes.OK
	if err != nil {
		s, ok := status.FromError(err)
		if !ok {
			s = status.FromContextError(err)
		}
		code = s.Code()
	}
	if int(code) < len(mm.handled) && mm.handled[code] != nil {
		mm.handled[code].Inc()
	} else {
		mm.m.handled.WithLabelValues(mm.typ, mm.service, mm.method, code.String()).Inc()
	}
	if mm.handling != nil {
		mm.handling.Observe(time.Since(start).Seconds())
	}
}

func methodType(clientStream, serverStream bool) string {
	switch {
	case !clientStream && !serverStream:
		return grpcTypeUnary
	case clientStream && !serverStream:
		return grpcTypeClientStream
	case !clientStream && serverStream:
		return grpcTypeServerStream
	}
	return grpcTypeBidiStream
}

// splitFullMethod splits "/package.Service/Method" as the middleware does.
func splitFullMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.Index(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", "unknown"
}

// countedServerStream counts a stream's messages in
// grpc_server_msg_{received,sent}_total, whatever the outcome of each
// send or receive (as the middleware).
type countedServerStream struct {
	grpc.ServerStream
	mm *grpcMethodMetrics
}

func (s countedServerStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	s.mm.sent.Inc()
	return err
}

func (s countedServerStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	s.mm.received.Inc()
	return err
}
