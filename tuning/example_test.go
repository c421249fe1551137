package tuning_test

import (
	"fmt"
	"strings"

	"github.com/metastore/metastore/tuning"
)

func ExamplePreset() {
	for _, name := range tuning.PresetNames() {
		o, err := tuning.Preset(name)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-12s %4d MiB\n", name, o.MemoryBudgetBytes()>>20)
	}
	// Output:
	// default      1536 MiB
	// large-volume 2048 MiB
	// low-memory     96 MiB
	// read-heavy   2560 MiB
	// write-heavy  3328 MiB
}

func ExampleParse() {
	o, err := tuning.Parse(`
# Node 3: more cache, fewer false positives.
block-cache-bytes = 1 GiB
bloom-bits-per-key = 12
`)
	fmt.Println(o.BlockCacheBytes>>20, o.BloomBitsPerKey, o.MemoryBudgetBytes()>>20, err)

	_, err = tuning.Parse("block-size-bytes = 64 MiB\nstatistics = on\n")
	fmt.Println(err)
	// Output:
	// 1024 12 2112 <nil>
	// line 2: statistics: invalid value "on": want true or false
}

func ExampleOptions_String() {
	// The first two of the file's 29 settings.
	lines := strings.Split(tuning.LowMemory().String(), "\n")
	fmt.Println(strings.Join(lines[:7], "\n"))
	// Output:
	// # MetaStore engine options
	//
	// # BlockCacheBytes is the capacity of the one LRU block cache shared by every column family (data, index and filter blocks).
	// block-cache-bytes = 32 MiB
	//
	// # RowCacheBytes is the capacity of RocksDB's row cache: whole key-value results of point lookups in SST files, so a repeated get of a flushed key skips the index and data block search (3.3 µs instead of 5.2 µs a get in BenchmarkGetLatestFlushed, docs/PERFORMANCE.md).
	// row-cache-bytes = 0
}
