package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCompareReport runs scripts/bench-report.sh (the table of make
// bench-compare) on a fixed results directory and checks its ratios.
func TestCompareReport(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	out, err := exec.Command("bash", "../scripts/bench-report.sh", "testdata/compare").CombinedOutput()
	if err != nil {
		t.Fatalf("bench-report.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"| op | clients x conns | noop req/s (p99 ms) | metastore-debian req/s (p99 ms) | metastore-release req/s (p99 ms) | etcd req/s (p99 ms) | metastore-debian/etcd req/s | metastore-debian/etcd p99 | metastore-release/etcd req/s | metastore-release/etcd p99 |",
		"| put | 100x10 | 40000 (5) | 20000 (10) | 26000 (6) | 10000 (20) | 2.00x | 0.50x | 2.60x | 0.30x |",
		"### 3 members, unpinned",
		"| get-l | 1x1 | 3000 (1, 2 errors) | 2000 (2) | 1.50x | 0.50x |",
		"| metastore-debian | 2.00x met | 0.50x met | not run | not run |",
		"| metastore-release | 2.60x met | 0.30x met | not run | not run |",
		"| 1 | pinned | metastore-debian | 55 | 114 |",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("report lacks line\n%s\nreport:\n%s", want, out)
		}
	}
}
