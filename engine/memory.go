package engine

// #include <malloc.h>
import "C"

// ReleaseFreeMemory hands the C heap's free pages back to the operating
// system (glibc's malloc_trim). RocksDB allocates memtables and block
// cache entries with malloc; once a flush frees a memtable, glibc keeps the
// pages in its arenas, so the process's RSS stays at its high-water mark
// long after the memory is unused. Call it after freeing a lot (an idle
// member's flush); it walks the heap, so not on a hot path. It reports
// whether any memory was released.
func ReleaseFreeMemory() bool {
	return C.malloc_trim(0) == 1
}
