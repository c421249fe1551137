// Package bench drives any etcd v3 endpoint (MetaStore or etcd itself)
// from outside, through go.etcd.io/etcd/client/v3, and measures it.
//
// A run is one Scenario (put, range, txn-k8s, watch, lease, load,
// compaction) executed by Options.Clients workers spread round-robin over
// Options.Conns gRPC connections, for Options.Duration or Options.Total
// operations, optionally paced by a shared Limiter. Run returns a Result:
// HdrHistogram latency percentiles, throughput per second over time, extra
// per-class histograms (for example latency during versus outside
// compactions) and counters. Result.WriteFile stores it as JSON;
// Result.BenchstatLine formats the one line per result that benchstat reads:
//
//	BenchmarkPut/target=metastore/clients=100/conns=10 41230 2425117 ns/op 5111807 p99-ns 8245.9 ops/s
//
// where the iteration count is the number of operations, ns/op is the mean
// latency of one operation (not wall time divided by N: the workers run
// concurrently), p99-ns the 99th percentile and ops/s the throughput.
//
// Overhead contract, so that the tool is not the bottleneck on a 2-core
// machine: keys and values are generated before the clock starts; workers
// record into a few histograms per GOMAXPROCS (so memory does not grow
// with the clients), each under a mutex that is rarely contended, which
// the collector drains once per interval; workers share no counter unless
// Options.Total or Options.Rate asks for one (one atomic operation per
// request each).
//
// Latency is measured from the moment a request is sent, not from the time
// the rate limiter scheduled it; under --rate the figures are therefore
// subject to coordinated omission when the server stalls.
package bench
