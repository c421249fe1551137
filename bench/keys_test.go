package bench

import (
	"errors"
	"sort"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	k := NewKeys("/bench/", 16, 300)
	if k.Len() != 300 {
		t.Fatalf("len %d", k.Len())
	}
	for _, c := range []struct {
		i    int
		want string
	}{
		{0, "/bench/000000000"},
		{42, "/bench/00000002a"},
		{299, "/bench/00000012b"},
	} {
		if got := k.Key(c.i); got != c.want {
			t.Errorf("Key(%d) = %q, want %q", c.i, got, c.want)
		}
	}
	keys := make([]string, k.Len())
	for i := range keys {
		keys[i] = k.Key(i)
		if len(keys[i]) != 16 || !strings.HasPrefix(keys[i], "/bench/") {
			t.Fatalf("key %d = %q", i, keys[i])
		}
	}
	if !sort.StringsAreSorted(keys) {
		t.Error("keys do not sort in index order: pages would not follow the key space")
	}
	end := prefixEnd("/bench/")
	if end != "/bench0" || keys[len(keys)-1] >= end {
		t.Errorf("prefixEnd = %q", end)
	}
	if got := prefixEnd("a\xff\xff"); got != "b" {
		t.Errorf("prefixEnd(a\\xff\\xff) = %q, want b", got)
	}
}

func TestHexDigits(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		want int
	}{{0, 1}, {1, 1}, {16, 1}, {17, 2}, {256, 2}, {257, 3}, {1 << 26, 7}} {
		if got := hexDigits(c.n); got != c.want {
			t.Errorf("hexDigits(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	o.Clients, o.Conns, o.Consistency, o.KeySize, o.TxnMix = 0, 0, "x", 4, "update=1,bogus=2"
	err := o.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	// Every violation is reported, not only the first.
	for _, want := range []string{"clients", "conns", "consistency", "key-size", "txn-mix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestParseTxnMix(t *testing.T) {
	for _, c := range []struct {
		in    string
		cum   [k8sNumOps]int
		total int
		bad   bool
	}{
		{in: defaultTxnMix, cum: [k8sNumOps]int{10, 70, 80, 95, 100}, total: 100},
		{in: "update=1", cum: [k8sNumOps]int{0, 1, 1, 1, 1}, total: 1},
		{in: "get=3, list=1", cum: [k8sNumOps]int{0, 0, 0, 3, 4}, total: 4},
		{in: "update=0", bad: true},
		{in: "update=-1", bad: true},
		{in: "update=1,update=2", bad: true},
		{in: "patch=1", bad: true},
		{in: "update", bad: true},
		{in: "", bad: true},
	} {
		m, err := parseTxnMix(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: no error", c.in)
			}
			continue
		}
		if err != nil || m.cum != c.cum || m.total != c.total {
			t.Errorf("%q: %+v %v, want cum %v total %d", c.in, m, err, c.cum, c.total)
		}
	}
}

func TestStampAndAckRing(t *testing.T) {
	for _, ns := range []int64{0, 1, 1234567890123, 1<<62 + 5} {
		b := appendStamp(nil, ns)
		got, ok := parseStamp(append(b, "padding"...))
		if len(b) != stampLen || !ok || got != ns {
			t.Errorf("stamp %d: %q -> %d %v", ns, b, got, ok)
		}
	}
	if _, ok := parseStamp([]byte("not a stamp at all")); ok {
		t.Error("parsed a non-stamp")
	}
	r := newAckRing(8)
	r.put(5, 500)
	if ns, ok := r.get(5); !ok || ns != 500 {
		t.Errorf("get(5) = %d %v", ns, ok)
	}
	if _, ok := r.get(13); ok { // same slot, other revision
		t.Error("get(13) found revision 5's ack")
	}
	r.put(13, 1300)
	if _, ok := r.get(5); ok {
		t.Error("revision 5 still there after its slot was reused")
	}
}

func TestNewScenario(t *testing.T) {
	for _, name := range ScenarioNames() {
		sc, err := NewScenario(name)
		if err != nil || sc.Name() != name {
			t.Errorf("%s: %v %v", name, sc, err)
		}
	}
	if _, err := NewScenario("nope"); err == nil {
		t.Error("unknown scenario: no error")
	}
	if !errors.Is(ErrDone, ErrDone) {
		t.Error("ErrDone")
	}
}
