package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestExportImportCheck(t *testing.T) {
	src := newCluster(t, 1)
	cli := src.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	want := map[string]string{}
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("exp/%03d", i)
		v := fmt.Sprintf("value-%d", i)
		if i%5 == 0 {
			k += "\x00\xff\x01bin"
			v = string([]byte{0, 1, 2, 0xfe, 0xff, byte(i)})
		}
		if i == 7 {
			v = ""
		}
		want[k] = v
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	// Outside the prefix: must not be exported.
	if _, err := cli.Put(ctx, "other", "x"); err != nil {
		t.Fatal(err)
	}
	// A leased key, for check's lease verification.
	lg, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "leased", "v", clientv3.WithLease(lg.ID)); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "export.jsonl")
	if b, err := exec.Command(metastoreBin, "export", "--endpoints", src.members[0].clientURL,
		"--prefix", "exp/", "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, b)
	}

	dst := newCluster(t, 1)
	if b, err := exec.Command(metastoreBin, "import", "--endpoints", dst.members[0].clientURL,
		"--in", out, "--txn-ops", "16").CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, b)
	}
	dcli := dst.client(t)
	resp, err := dcli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	if len(got) != len(want) {
		t.Fatalf("imported %d keys, want %d: %q", len(got), len(want), got)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("key %q: got %q (present %v), want %q", k, g, ok, v)
		}
	}

	// Offline check of the source member.
	m := src.members[0]
	m.kill(syscall.SIGTERM)
	b, err := exec.Command(metastoreBin, "check", "--data-dir", m.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, b)
	}
	// 50 exported keys + "other" + "leased".
	if !strings.Contains(string(b), "keys: 52\n") || !strings.Contains(string(b), "leases: 1\n") {
		t.Fatalf("check output does not report 52 keys and 1 lease:\n%s", b)
	}
	t.Logf("check output:\n%s", b)
}

func TestCheckMissingDataDir(t *testing.T) {
	binaries(t)
	b, err := exec.Command(metastoreBin, "check", "--data-dir", t.TempDir()).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check of an empty dir: err %v, want exit 1\n%s", err, b)
	}
}
