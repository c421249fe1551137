// Command metastore-robustness runs MetaStore's robustness suite: real
// metastore processes (a failpoints build) under recorded client traffic
// and one injected fault per run, then checks the history: linearizability
// with porcupine, the watch guarantees on every member, no acknowledged
// write lost, revisions never going back, HashKV equal on every member and
// every restarted member serving within a bound. Every run prints its
// seed; `--seed N --runs 1` with the same flags replays it.
//
//	go build -tags failpoints -o bin/metastore-failpoints ./cmd/metastore
//	metastore-robustness --binary bin/metastore-failpoints --runs 20 --out robustness-results
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	var (
		seed     = flag.Uint64("seed", 0, "seed of the first run (0: from the clock); run i uses seed+i")
		members  = flag.String("members", "1,3", "cluster sizes, cycled over the runs")
		profile  = flag.String("profile", "k8s,etcd", "traffic profiles (k8s, etcd), cycled over the runs")
		fault    = flag.String("fault", "random", "fault name, \"random\" (drawn with the seed) or \"all\" (every fault in turn); known: "+faultNames())
		duration = flag.Duration("duration", 12*time.Second, "traffic time of one run")
		runs     = flag.Int("runs", 1, "number of runs")
		out      = flag.String("out", "robustness-results", "directory for failing runs' data, logs and porcupine visualizations")
		binary   = flag.String("binary", "bin/metastore-failpoints", "metastore binary built with -tags failpoints")
	)
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano() % 1e9)
	}
	sizes, err := parseSizes(*members)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	profiles := strings.Split(*profile, ",")
	failed := 0
	counts := map[string]int{}
	for i := 0; i < *runs; i++ {
		cfg := runConfig{Seed: *seed + uint64(i), Members: sizes[i%len(sizes)], Profile: profiles[(i/len(sizes))%len(profiles)],
			Fault: *fault, Duration: *duration, Out: *out, Binary: *binary}
		if *fault == "all" {
			fs := faultsFor(cfg.Members)
			cfg.Fault = fs[(i/len(sizes))%len(fs)].name
		}
		fmt.Printf("run %d/%d: seed=%d members=%d profile=%s fault=%s\n", i+1, *runs, cfg.Seed, cfg.Members, cfg.Profile, cfg.Fault)
		res := runOnce(cfg)
		fmt.Println(res)
		counts[res.Status]++
		if res.Status != "pass" {
			failed++
			fmt.Printf("  replay: metastore-robustness --binary %s --seed %d --runs 1 --members %d --profile %s --fault %s --duration %v\n",
				*binary, cfg.Seed, cfg.Members, cfg.Profile, cfg.Fault, *duration)
		}
	}
	fmt.Printf("summary: %d runs, %d pass, %d fail, %d unknown (seeds %d..%d)\n",
		*runs, counts["pass"], counts["fail"], counts["unknown"], *seed, *seed+uint64(*runs)-1)
	if failed > 0 {
		os.Exit(1)
	}
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "1":
			out = append(out, 1)
		case "3":
			out = append(out, 3)
		default:
			return nil, fmt.Errorf("--members: %q is not 1 or 3", f)
		}
	}
	return out, nil
}
