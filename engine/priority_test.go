package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLowPriorityCompactions: with the option, the threads that ran a
// compaction (RocksDB's "rocksdb:low" pool) run at nice 19, and the flush
// threads ("rocksdb:high") do not.
func TestLowPriorityCompactions(t *testing.T) {
	o := testOptions()
	o.LowPriorityCompactions = true
	db, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Two flushed files of overlapping keys, then a compaction of them.
	for f := 0; f < 2; f++ {
		b := db.NewBatch()
		for i := 0; i < 100; i++ {
			b.Put(CFKV, []byte(fmt.Sprint("k", i)), []byte(fmt.Sprint(f)))
		}
		if err := db.Write(b, false); err != nil {
			t.Fatal(err)
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CompactRange(CFKV, nil, nil); err != nil {
		t.Fatal(err)
	}
	nices := map[string][]int{}
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, task := range tasks {
		comm, err1 := os.ReadFile(task + "/comm")
		stat, err2 := os.ReadFile(task + "/stat")
		if err1 != nil || err2 != nil {
			continue // the thread ended
		}
		// Field 19 is nice; fields after the ")" of comm count from 3.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		nice, err := strconv.Atoi(f[19-3])
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSpace(string(comm))
		nices[name] = append(nices[name], nice)
	}
	low := 0
	for _, n := range nices["rocksdb:low"] {
		if n == 19 {
			low++
		}
	}
	if low == 0 {
		t.Fatalf("no compaction thread at nice 19: %v", nices)
	}
	for _, n := range nices["rocksdb:high"] {
		if n != 0 {
			t.Fatalf("a flush thread at nice %d: %v", n, nices)
		}
	}
}
