package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// ms is a timestamp in the hand-made histories.
func ms(n int) int64 { return int64(n) * int64(time.Millisecond) }

func put(client int, key, value string, call, ret int, rev int64) Op {
	return Op{Client: client, Req: Request{Kind: opPut, Key: key, Value: value}, Resp: Response{Rev: rev}, Call: ms(call), Return: ms(ret)}
}

func get(client int, key string, call, ret int, rev int64, kvs ...KV) Op {
	return Op{Client: client, Req: Request{Kind: opRange, Key: key}, Resp: Response{Rev: rev, KVs: kvs, Count: int64(len(kvs))}, Call: ms(call), Return: ms(ret)}
}

func putEvent(key, value string, rev int64, prev *KV) Event {
	return Event{Type: EventPut, KV: KV{Key: key, Value: value, ModRev: rev}, Prev: prev}
}

// goodWatch is a watch that saw x=a@2, x=b@3 and a progress notification.
func goodWatch(member string) *WatchLog {
	return &WatchLog{Member: member, StartRev: 1, Responses: []WatchResp{
		{Events: []Event{putEvent("x", "a", 2, nil)}},
		{Events: []Event{putEvent("x", "b", 3, &KV{"x", "a", 2})}},
		{Progress: true, HeaderRev: 3},
	}}
}

func linearizable(t *testing.T, ops []Op, watches ...*WatchLog) porcupine.CheckResult {
	t.Helper()
	rl, problems := buildRevisionLog(watches)
	if len(problems) > 0 {
		t.Fatalf("revision log: %v", problems)
	}
	finalRev := rl.MaxRev
	for _, op := range ops {
		finalRev = max(finalRev, op.Resp.Rev)
	}
	res, err := checkLinearizable(ops, rl, finalRev, noTimeout, filepath.Join(t.TempDir(), "viz.html"))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCheckersAcceptAGoodHistory(t *testing.T) {
	ops := []Op{
		put(0, "x", "a", 0, 10, 2),
		get(1, "x", 5, 12, 2, KV{"x", "a", 2}), // concurrent with the put: may see it
		put(0, "x", "b", 20, 30, 3),
		get(1, "x", 31, 40, 3, KV{"x", "b", 3}),
		{Client: 2, Req: Request{Kind: opTxn, Conds: []Cond{{Key: "x", ModRev: 2}},
			Then: []TxnOp{{Kind: opPut, Key: "x", Value: "c"}}, Else: []TxnOp{{Kind: opRange, Key: "x"}}},
			Resp: Response{Rev: 3, Succeeded: false, Results: [][]KV{{{"x", "b", 3}}}}, Call: ms(41), Return: ms(45)},
	}
	w := []*WatchLog{goodWatch("m1"), goodWatch("m2")}
	if res := linearizable(t, ops, w...); res != porcupine.Ok {
		t.Fatalf("linearizability: %v, want Ok", res)
	}
	h := History{Ops: ops, Watches: w, Stale: []StaleRead{{Key: "x", Rev: 2, KVs: []KV{{"x", "a", 2}}, Count: 1}}}
	if _, problems, _ := checkHistory(h, []Probe{{Member: "m1", Rev: 2}, {Member: "m1", Time: 1, Rev: 3}}, 3, noTimeout, ""); len(problems) > 0 {
		t.Fatalf("problems in a good history: %v", problems)
	}
}

func TestFailedWriteIsPossiblyApplied(t *testing.T) {
	failed := Op{Client: 0, Req: Request{Kind: opPut, Key: "x", Value: "a"}, Resp: Response{Unknown: true}, Call: ms(0), Return: ms(10)}
	// Applied: a later read sees it.
	if res := linearizable(t, []Op{failed, get(1, "x", 20, 30, 2, KV{"x", "a", 2})}); res != porcupine.Ok {
		t.Fatalf("applied failed write: %v, want Ok", res)
	}
	// Not applied: a later read does not see it.
	if res := linearizable(t, []Op{failed, get(1, "x", 20, 30, 1)}); res != porcupine.Ok {
		t.Fatalf("lost failed write: %v, want Ok", res)
	}
}

func TestCheckersReportBadHistories(t *testing.T) {
	t.Run("stale linearizable read", func(t *testing.T) {
		ops := []Op{put(0, "x", "a", 0, 10, 2), put(0, "x", "b", 20, 30, 3), get(1, "x", 40, 50, 2, KV{"x", "a", 2})}
		if res := linearizable(t, ops); res != porcupine.Illegal {
			t.Fatalf("got %v, want Illegal", res)
		}
	})
	t.Run("lost acknowledged write", func(t *testing.T) {
		ops := []Op{put(0, "x", "a", 0, 10, 2), get(1, "x", 20, 30, 2)}
		if res := linearizable(t, ops); res != porcupine.Illegal {
			t.Fatalf("got %v, want Illegal", res)
		}
		// The watches hold a different write at the acknowledged revision.
		w := &WatchLog{Member: "m1", StartRev: 1, Responses: []WatchResp{{Events: []Event{putEvent("y", "z", 2, nil)}}}}
		rl, _ := buildRevisionLog([]*WatchLog{w})
		if p, _ := checkAcknowledged(ops, rl); len(p) == 0 {
			t.Fatal("checkAcknowledged missed the lost write")
		}
	})
	t.Run("revision handed out twice", func(t *testing.T) {
		ops := []Op{put(0, "x", "a", 0, 10, 2), put(1, "y", "b", 20, 30, 2)}
		if res := linearizable(t, ops); res != porcupine.Illegal {
			t.Fatalf("got %v, want Illegal", res)
		}
	})
	t.Run("duplicate watch event", func(t *testing.T) {
		w := goodWatch("m1")
		w.Responses = append(w.Responses[:2], WatchResp{Events: []Event{putEvent("x", "b", 3, &KV{"x", "a", 2})}})
		rl, _ := buildRevisionLog([]*WatchLog{goodWatch("m2"), w})
		if p := checkWatch(w, rl, nil, 3); len(p) == 0 {
			t.Fatal("duplicate event not reported")
		}
	})
	t.Run("out of order watch events", func(t *testing.T) {
		w := &WatchLog{Member: "m1", StartRev: 1, Responses: []WatchResp{
			{Events: []Event{putEvent("x", "b", 3, &KV{"x", "a", 2})}},
			{Events: []Event{putEvent("x", "a", 2, nil)}},
		}}
		rl, _ := buildRevisionLog([]*WatchLog{goodWatch("m2"), w})
		if p := checkWatch(w, rl, nil, 3); len(p) == 0 {
			t.Fatal("out-of-order events not reported")
		}
	})
	t.Run("watch gap", func(t *testing.T) {
		w := &WatchLog{Member: "m1", StartRev: 1, Responses: []WatchResp{{Events: []Event{putEvent("x", "b", 3, &KV{"x", "a", 2})}}}}
		rl, _ := buildRevisionLog([]*WatchLog{goodWatch("m2"), w})
		if p := checkWatch(w, rl, nil, 3); len(p) == 0 {
			t.Fatal("gap not reported")
		}
		// A compaction error in between makes the gap legitimate.
		w.Responses = append([]WatchResp{{Compacted: 3}}, w.Responses...)
		if p := checkWatch(w, rl, nil, 3); len(p) != 0 {
			t.Fatalf("gap after a compaction error reported: %v", p)
		}
	})
	t.Run("wrong prev_kv", func(t *testing.T) {
		w := goodWatch("m1")
		w.Responses[1].Events[0].Prev = &KV{"x", "zzz", 2}
		rl, _ := buildRevisionLog([]*WatchLog{goodWatch("m2"), w})
		if p := checkWatch(w, rl, nil, 3); len(p) == 0 {
			t.Fatal("wrong prev_kv not reported")
		}
	})
	t.Run("event before progress notification", func(t *testing.T) {
		w := &WatchLog{Member: "m1", StartRev: 1, Responses: []WatchResp{
			{Events: []Event{putEvent("x", "a", 2, nil)}},
			{Progress: true, HeaderRev: 3},
			{Events: []Event{putEvent("x", "b", 3, &KV{"x", "a", 2})}},
		}}
		rl, _ := buildRevisionLog([]*WatchLog{goodWatch("m2"), w})
		if p := checkWatch(w, rl, nil, 3); len(p) == 0 {
			t.Fatal("progress notification ahead of an event not reported")
		}
	})
	t.Run("stale read at a revision", func(t *testing.T) {
		rl, _ := buildRevisionLog([]*WatchLog{goodWatch("m1")})
		p, _ := checkStaleReads([]StaleRead{{Key: "x", Rev: 3, KVs: []KV{{"x", "a", 2}}, Count: 1}}, rl)
		if len(p) == 0 {
			t.Fatal("wrong read at revision 3 not reported")
		}
	})
	t.Run("revision going back", func(t *testing.T) {
		p := checkRevisionMonotonic([]Probe{{Member: "m1", Time: 1, Rev: 10}, {Member: "m1", Time: 2, Rev: 9}})
		if len(p) == 0 {
			t.Fatal("revision decrease not reported")
		}
	})
}

// TestSmoke is the 2-minute smoke of the robustness suite that `make test`
// runs: seeded short runs over 1 and 3 members, both profiles and several
// fault kinds. `make robustness` runs the full suite.
func TestSmoke(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "metastore-failpoints")
	out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", bin, "../metastore").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -tags failpoints: %v\n%s", err, out)
	}
	results := t.TempDir()
	if dir := os.Getenv("ROBUSTNESS_SMOKE_OUT"); dir != "" {
		results = dir
	}
	for _, cfg := range []runConfig{
		{Seed: 101, Members: 1, Profile: "etcd", Fault: "kill-leader"},
		{Seed: 102, Members: 3, Profile: "k8s", Fault: "panic-applyAfterBatch"},
		{Seed: 103, Members: 3, Profile: "etcd", Fault: "blackhole-leader"},
		{Seed: 104, Members: 1, Profile: "k8s", Fault: "panic-raftBeforeSave"},
	} {
		cfg.Duration, cfg.Out, cfg.Binary = 8*time.Second, results, bin
		res := runOnce(cfg)
		t.Log(res)
		if res.Status != "pass" {
			t.Errorf("seed %d %s %dm %s: %s:\n%s", cfg.Seed, cfg.Profile, cfg.Members, cfg.Fault, res.Status, strings.Join(res.Problems, "\n"))
		}
	}
}
