//go:build failpoints

package failpoint

import (
	"errors"
	"testing"
)

func TestInjectCounts(t *testing.T) {
	if err := Set(RaftSync, "2*error"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := Inject(RaftSync); !errors.Is(err, ErrInjected) {
			t.Fatalf("hit %d: %v", i, err)
		}
	}
	if err := Inject(RaftSync); err != nil {
		t.Fatalf("third hit: %v, want the point spent", err)
	}
	if Hits()[RaftSync] != 3 {
		t.Fatalf("hits %v", Hits())
	}
	if err := Set(CompactMid, "panic"); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		_ = Inject(CompactMid)
	}()
	_ = Set(CompactMid, "off")
	if err := Inject(CompactMid); err != nil {
		t.Fatal(err)
	}
}
