# MetaStore's commands. `make run` and `make test` are the newcomer's two.
SHELL := /bin/bash
GO ?= go
BIN := bin
DATA ?= ./data
PKGS := ./...
# The whole suite must stay well inside CI's 30-minute budget on 2 cores.
TEST_TIMEOUT ?= 25m

.PHONY: all setup build test vet fmt-check bench bench-load run cluster cluster-stop etcd fuzz robustness clean \
	rocksdb-release bench-compare bench-scale bench-presets bench-all pgo

all: build

setup:
	@bash scripts/setup.sh

# ROCKSDB selects the RocksDB that bin/metastore links: debian (Debian's
# shared librocksdb, the quick path `make run` uses) or release (the static
# -O2 -DNDEBUG x86-64-v3 build of `make rocksdb-release`, compiled once into
# ~/.cache/metastore). bench-compare measures both unless ROCKSDB is given.
BENCH_COMPARE_ROCKSDB := $(if $(filter undefined,$(origin ROCKSDB)),both,$(ROCKSDB))
ROCKSDB ?= debian
rocksdb_env = $(if $(filter release,$(1)),eval "$$(bash scripts/rocksdb-release.sh --export)";,)

build: setup
	@mkdir -p $(BIN)
	@if [ -d cmd/metastore ]; then $(call rocksdb_env,$(ROCKSDB)) $(GO) build -o $(BIN)/metastore ./cmd/metastore && \
	  bash scripts/rocksdb-which.sh $(BIN)/metastore; fi
	@if [ -d cmd/metastore-bench ]; then $(GO) build -o $(BIN)/metastore-bench ./cmd/metastore-bench; fi

# etcd builds real etcd and etcdctl once into ~/.cache/metastore (the oracle
# of the differential and end-to-end tests).
etcd:
	@bash scripts/etcd.sh >/dev/null

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: setup etcd fmt-check vet
	ETCD_BIN_DIR=$$(bash scripts/etcd.sh) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# bench runs the Go benchmarks of the storage layers; figures and the
# commands behind them are in docs/BENCHMARKS.md.
bench: setup
	$(GO) test -run XXX -bench . -benchmem -timeout 60m ./engine ./mvcc ./raftlog/...

# bench-load runs the load tool against a running member (e.g. `make run`);
# benchstat lines go to $(BENCH_OUT)/$(BENCH_TARGET).txt, result JSON and
# profiles to $(BENCH_OUT). See docs/BENCHMARKS.md.
BENCH_ENDPOINTS ?= 127.0.0.1:2379
BENCH_TARGET ?= metastore
BENCH_OUT ?= bench-results
BENCH_SCENARIOS ?= put range txn-k8s watch lease
BENCH_FLAGS ?= --clients 100 --conns 10 --duration 30s
bench-load: build
	@mkdir -p $(BENCH_OUT)
	@for s in $(BENCH_SCENARIOS); do \
	  $(BIN)/metastore-bench $$s --endpoints $(BENCH_ENDPOINTS) --target-name $(BENCH_TARGET) \
	    $(BENCH_FLAGS) --out $(BENCH_OUT) | tee -a $(BENCH_OUT)/$(BENCH_TARGET).txt || exit 1; \
	done

# rocksdb-release builds RocksDB 7.8.3 from Debian's source package as a
# static release library (once; cached in ~/.cache/metastore) and prints the
# CGO flags that link it. A long compile: about an hour on 2 busy cores.
rocksdb-release:
	@bash scripts/rocksdb-release.sh

# bench-compare runs the standard matrix (docs/BENCHMARKS.md) against the
# no-op server, MetaStore (both RocksDB builds unless ROCKSDB=debian|release)
# and etcd 3.6.16, 1 and 3 members, pinned and unpinned, and prints a
# markdown table; knobs are the BENCH_COMPARE_* variables of
# scripts/bench-compare.sh (e.g. BENCH_COMPARE_REQUESTS=6000 for a quick run).
bench-compare: setup etcd
	@mkdir -p $(BIN)
	@$(GO) build -o $(BIN)/metastore-bench ./cmd/metastore-bench
	@ms=""; for v in $(if $(filter both,$(BENCH_COMPARE_ROCKSDB)),debian release,$(BENCH_COMPARE_ROCKSDB)); do \
	  if [ $$v = release ]; then eval "$$(bash scripts/rocksdb-release.sh --export)"; fi; \
	  $(GO) build -o $(BIN)/metastore-$$v ./cmd/metastore && bash scripts/rocksdb-which.sh $(BIN)/metastore-$$v || exit 1; \
	  ms="$$ms metastore-$$v=$(BIN)/metastore-$$v"; \
	done; BENCH_COMPARE_METASTORE="$${BENCH_COMPARE_METASTORE:-$$ms}" bash scripts/bench-compare.sh

# bench-scale loads BENCH_SCALE_KEYS (10M) keys of 256 B into MetaStore and
# etcd and compares RSS, disk and get/page p99 with the same at 100k keys.
# Hours on this machine; see scripts/bench-scale.sh for its knobs.
bench-scale: setup etcd
	@mkdir -p $(BIN)
	@$(GO) build -o $(BIN)/metastore-bench ./cmd/metastore-bench
	@$(call rocksdb_env,$(ROCKSDB)) $(GO) build -o $(BIN)/metastore-scale ./cmd/metastore && bash scripts/rocksdb-which.sh $(BIN)/metastore-scale
	@METASTORE_BIN=$(BIN)/metastore-scale bash scripts/bench-scale.sh

# bench-presets measures every tuning preset on the standard rows and a
# 1M-key scale load, RSS beside each preset's memory budget (docs/TUNING.md).
bench-presets: setup etcd
	@mkdir -p $(BIN)
	@$(GO) build -o $(BIN)/metastore-bench ./cmd/metastore-bench
	@$(call rocksdb_env,$(ROCKSDB)) $(GO) build -o $(BIN)/metastore-presets ./cmd/metastore && bash scripts/rocksdb-which.sh $(BIN)/metastore-presets
	@METASTORE_BIN=$(BIN)/metastore-presets bash scripts/bench-presets.sh

# bench-all is the whole measurement for a quiet machine, one command:
# bench-compare with the watch and compaction extras, bench-presets and
# bench-scale (hours: the 10M-key load). Each prints and keeps its markdown
# report; bench-results/all-DATE/report.md holds all three.
# Presets and scale use the release RocksDB unless ROCKSDB says otherwise.
BENCH_ALL_ROCKSDB := $(if $(filter both,$(BENCH_COMPARE_ROCKSDB)),release,$(BENCH_COMPARE_ROCKSDB))
bench-all:
	@d=bench-results/all-$$(date +%Y%m%d-%H%M%S); mkdir -p $$d; \
	$(MAKE) --no-print-directory bench-compare BENCH_COMPARE_OUT=$$d/compare BENCH_COMPARE_EXTRA="watch compaction" && \
	$(MAKE) --no-print-directory bench-presets BENCH_PRESETS_OUT=$$d/presets ROCKSDB=$(BENCH_ALL_ROCKSDB) && \
	$(MAKE) --no-print-directory bench-scale BENCH_SCALE_OUT=$$d/scale ROCKSDB=$(BENCH_ALL_ROCKSDB) && \
	cat $$d/compare/report.md $$d/presets/report.md $$d/scale/report.md > $$d/report.md; \
	echo "all reports: $$d/report.md"

# pgo runs the put, range and txn-k8s scenarios against a fresh MetaStore
# with CPU profiles and merges them into cmd/metastore/default.pgo, which
# `go build` then uses (-pgo=auto). See docs/PERFORMANCE.md.
pgo: setup
	@mkdir -p $(BIN)
	@$(GO) build -o $(BIN)/metastore-bench ./cmd/metastore-bench
	@$(call rocksdb_env,$(ROCKSDB)) $(GO) build -pgo=off -o $(BIN)/metastore-nopgo ./cmd/metastore
	@METASTORE_BIN=$(BIN)/metastore-nopgo bash scripts/bench-pgo.sh

# disk-faults runs the disk-full tests on a real size-capped tmpfs that
# they mount (root or CAP_SYS_ADMIN needed, so not part of `make test`,
# which covers the same paths with injected faults); docs/RELIABILITY.md.
.PHONY: disk-faults
disk-faults: setup etcd
	ETCD_BIN_DIR=$$(bash scripts/etcd.sh) $(GO) test -tags diskfaults -count=1 -v -timeout 20m -run '^TestDiskFull' ./cmd/metastore

# fuzz runs every fuzz target for FUZZTIME each (the seeds alone run in `make test`).
FUZZTIME ?= 30s
fuzz: setup
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# robustness runs the robustness suite (cmd/metastore-robustness): ROBUSTNESS_RUNS
# seeded runs of real members built with -tags failpoints, cycling members 1 and 3,
# both traffic profiles and every fault, each checked for linearizability
# (porcupine), the watch guarantees, lost writes, revisions and HashKV. Failing
# runs keep their logs and porcupine visualization under ROBUSTNESS_OUT; every
# run prints its seed and a replay command. See docs/RELIABILITY.md.
ROBUSTNESS_RUNS ?= 20
ROBUSTNESS_SEED ?= $(shell date +%s)
ROBUSTNESS_DURATION ?= 12s
ROBUSTNESS_OUT ?= robustness-results
robustness: setup
	@mkdir -p $(BIN)
	$(GO) build -tags failpoints -o $(BIN)/metastore-failpoints ./cmd/metastore
	$(GO) build -o $(BIN)/metastore-robustness ./cmd/metastore-robustness
	$(BIN)/metastore-robustness --binary $(BIN)/metastore-failpoints --runs $(ROBUSTNESS_RUNS) \
	  --seed $(ROBUSTNESS_SEED) --members 1,3 --profile k8s,etcd --fault all \
	  --duration $(ROBUSTNESS_DURATION) --out $(ROBUSTNESS_OUT)

run: build
	$(BIN)/metastore --name default --data-dir $(DATA) \
	  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	  --initial-cluster default=http://127.0.0.1:2380

# cluster starts three members on loopback (clients on 2379/22379/32379,
# peers on 2380/22380/32380) with data under ./cluster; cluster-stop ends them.
CLUSTER := m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380
cluster: build
	@mkdir -p cluster
	@for m in "m1 2379 2380" "m2 22379 22380" "m3 32379 32380"; do set -- $$m; \
	  $(BIN)/metastore --name $$1 --data-dir cluster/$$1 \
	    --listen-client-urls http://127.0.0.1:$$2 --advertise-client-urls http://127.0.0.1:$$2 \
	    --listen-peer-urls http://127.0.0.1:$$3 --initial-advertise-peer-urls http://127.0.0.1:$$3 \
	    --initial-cluster $(CLUSTER) --initial-cluster-state new --initial-cluster-token metastore-cluster \
	    > cluster/$$1.log 2>&1 & echo $$! > cluster/$$1.pid; \
	done; echo "cluster: clients on 127.0.0.1:2379,22379,32379; logs in cluster/*.log"

cluster-stop:
	@for p in cluster/*.pid; do [ -f "$$p" ] && kill $$(cat $$p) 2>/dev/null; rm -f $$p; done; true

clean:
	rm -rf $(BIN)
