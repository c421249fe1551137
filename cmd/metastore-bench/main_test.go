package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metastore/metastore/bench"
)

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		say  string
	}{
		{nil, exitUsage, "usage:"},
		{[]string{"help"}, 0, "usage:"},
		{[]string{"nope"}, exitUsage, `unknown scenario "nope"`},
		{[]string{"put", "--help"}, 0, "-clients"},
		{[]string{"put", "--clients", "0", "--consistency", "x"}, exitUsage, "consistency"},
		{[]string{"put", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"put", "--progress", "loud"}, exitUsage, "--progress"},
		{[]string{"compare", "one.json"}, exitUsage, "need at least 2"},
		{[]string{"chart"}, exitUsage, "need at least 1"},
		{[]string{"noop-server", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"noop-server", "--listen", "256.0.0.1:1"}, 1, "256.0.0.1"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.say) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d saying %q", c.args, code, stderr.String(), c.code, c.say)
		}
	}
}

func TestCompareAndChart(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, target := range []string{"metastore", "etcd"} {
		r := &bench.Result{Name: "BenchmarkPut/target=" + target + "/clients=1/conns=1", Scenario: "put", Target: target,
			Start: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Ops: 100, OpsPerSec: float64(100 * (i + 1)),
			Latency: bench.Summary{Count: 100, P50Ns: 1e6, P99Ns: 2e6, P999Ns: 3e6, MaxNs: 4e6},
			Timeline: []bench.Point{{EndSec: 1, DurSec: 1, Ops: 100, OpsPerSec: 100, Latency: bench.Summary{Count: 100, P50Ns: 1e6, P99Ns: 2e6, P999Ns: 3e6}},
				{EndSec: 2, DurSec: 1, Ops: 100, OpsPerSec: 100, Latency: bench.Summary{Count: 100, P50Ns: 1e6, P99Ns: 2e6, P999Ns: 3e6}}}}
		p, err := r.WriteFile(dir)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"compare"}, paths...), &stdout, &stderr); code != 0 {
		t.Fatalf("compare: exit %d: %s", code, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "Put/clients=1/conns=1") || !strings.Contains(out, "0.50x") {
		t.Errorf("compare printed\n%s", out)
	}
	pngPath := filepath.Join(dir, "c.png")
	if code := run(append([]string{"chart", "--out", pngPath, "--width", "640", "--height", "480"}, paths...), &stdout, &stderr); code != 0 {
		t.Fatalf("chart: exit %d: %s", code, stderr.String())
	}
	checkPNG(t, pngPath, 640, 480)
}

func checkPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("%dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
}
