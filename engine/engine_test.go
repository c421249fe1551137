package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/metastore/metastore/engine/ddtest"
	"github.com/metastore/metastore/tuning"
)

// testOptions are small so tests open quickly and flush often.
func testOptions() tuning.Options {
	o := tuning.Default()
	o.BlockCacheBytes = 8 << 20
	o.WriteBufferBytes = 1 << 20
	o.MaxWriteBufferNumber = 2
	return o
}

func openTest(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func parseCF(t *testing.T, name string) CF {
	for cf := CF(0); cf < NumCFs; cf++ {
		if cf.String() == name {
			return cf
		}
	}
	t.Fatalf("unknown column family %q", name)
	return 0
}

// unquote lets scripts spell bytes such as \x00 and \xff.
func unquote(t *testing.T, s string) []byte {
	if s == "nil" {
		return nil
	}
	u, err := fmtUnquote(s)
	if err != nil {
		t.Fatalf("bad bytes %q: %v", s, err)
	}
	return u
}

func fmtUnquote(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			var b byte
			if _, err := fmt.Sscanf(s[i+2:i+4], "%02x", &b); err != nil {
				return nil, err
			}
			out = append(out, b)
			i += 3
			continue
		}
		out = append(out, s[i])
	}
	return out, nil
}

func quote(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x21 && c < 0x7f && c != '\\' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "\\x%02x", c)
		}
	}
	return sb.String()
}

// TestDataDriven runs the scripts in testdata/. Commands:
//
//	batch [sync]           lines: put <cf> <key> <value> | del <cf> <key> | delrange <cf> <start> <end>
//	get <cf> <key> [snap=<name>] [append=<prefix> [cap=<n>]]
//	scan <cf> [lower=<k>] [upper=<k>] [reverse] [snap=<name>]
//	iter <cf> [lower=<k>] [upper=<k>]  lines: first | last | next | prev | seek-ge <k> | seek-le <k> | seek-lt <k> | prefix <n>
//	snapshot <name> | release <name>
//	reopen | flush | compact <cf> | checkpoint <name> | open-checkpoint <name>
func TestDataDriven(t *testing.T) {
	ddtest.Scripts(t, func(t *testing.T, path string) {
		dir := t.TempDir()
		db := openTest(t, filepath.Join(dir, "db"))
		snaps := map[string]*Snapshot{}
		defer func() {
			for _, s := range snaps {
				s.Close()
			}
			db.Close()
		}()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name string) ([]byte, bool) {
				for _, a := range d.CmdArgs {
					if a.Key == name {
						if len(a.Vals) == 0 {
							return nil, true
						}
						return unquote(t, a.Vals[0]), true
					}
				}
				return nil, false
			}
			pos := func(i int) string {
				if i >= len(d.CmdArgs) {
					t.Fatalf("%s: missing argument %d", d.Cmd, i)
				}
				return d.CmdArgs[i].Key
			}
			snap := func() *Snapshot {
				if name, ok := arg("snap"); ok {
					s := snaps[string(name)]
					if s == nil {
						t.Fatalf("no snapshot %s", name)
					}
					return s
				}
				return nil
			}
			switch d.Cmd {
			case "batch":
				b := db.NewBatch()
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					f := strings.Fields(line)
					switch {
					case len(f) == 4 && f[0] == "put":
						b.Put(parseCF(t, f[1]), unquote(t, f[2]), unquote(t, f[3]))
					case len(f) == 3 && f[0] == "del":
						b.Delete(parseCF(t, f[1]), unquote(t, f[2]))
					case len(f) == 4 && f[0] == "delrange":
						b.DeleteRange(parseCF(t, f[1]), unquote(t, f[2]), unquote(t, f[3]))
					default:
						t.Fatalf("bad batch line %q", line)
					}
				}
				_, sync := arg("sync")
				if err := db.Write(b, sync); err != nil {
					return err.Error()
				}
				return fmt.Sprintf("ok count=%d", b.Count())
			case "get":
				cf, key := parseCF(t, pos(0)), unquote(t, pos(1))
				var v []byte
				var found bool
				var err error
				// append=PREFIX reads with GetAppend after PREFIX, in a
				// buffer of cap=N bytes (default: just PREFIX).
				prefix, appendTo := arg("append")
				var dst []byte
				if appendTo {
					c := len(prefix)
					if cs, ok := arg("cap"); ok {
						c, _ = strconv.Atoi(string(cs))
					}
					dst = append(make([]byte, 0, max(c, len(prefix))), prefix...)
				}
				switch s := snap(); {
				case s != nil && appendTo:
					v, found, err = s.GetAppend(dst, cf, key)
				case s != nil:
					v, found, err = s.Get(cf, key)
				case appendTo:
					v, found, err = db.GetAppend(dst, cf, key)
				default:
					v, found, err = db.Get(cf, key)
				}
				switch {
				case err != nil:
					return err.Error()
				case appendTo && !bytes.Equal(v[:len(prefix)], prefix):
					t.Fatalf("GetAppend overwrote the prefix: %q", v)
				case !found && appendTo:
					return fmt.Sprintf("not found: %s", quote(v))
				case !found:
					return "not found"
				}
				return quote(v)
			case "scan":
				lower, _ := arg("lower")
				upper, _ := arg("upper")
				o := IterOptions{Lower: lower, Upper: upper}
				var it *Iterator
				var err error
				if s := snap(); s != nil {
					it, err = s.NewIterator(parseCF(t, pos(0)), o)
				} else {
					it, err = db.NewIterator(parseCF(t, pos(0)), o)
				}
				if err != nil {
					return err.Error()
				}
				defer it.Close()
				var sb strings.Builder
				_, reverse := arg("reverse")
				step, valid := it.Next, it.First()
				if reverse {
					step, valid = it.Prev, it.Last()
				}
				for ; valid; valid = step() {
					fmt.Fprintf(&sb, "%s=%s\n", quote(it.Key()), quote(it.Value()))
				}
				if err := it.Error(); err != nil {
					return err.Error()
				}
				if sb.Len() == 0 {
					return "empty"
				}
				return sb.String()
			case "iter":
				lower, _ := arg("lower")
				upper, _ := arg("upper")
				it, err := db.NewIterator(parseCF(t, pos(0)), IterOptions{Lower: lower, Upper: upper})
				if err != nil {
					return err.Error()
				}
				defer it.Close()
				var sb strings.Builder
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					f := strings.Fields(line)
					var ok bool
					switch f[0] {
					case "first":
						ok = it.First()
					case "last":
						ok = it.Last()
					case "next":
						ok = it.Next()
					case "prev":
						ok = it.Prev()
					case "seek-ge":
						ok = it.SeekGE(unquote(t, f[1]))
					case "seek-le":
						ok = it.SeekLE(unquote(t, f[1]))
					case "seek-lt":
						ok = it.SeekLT(unquote(t, f[1]))
					case "prefix":
						// prefix N: the first N bytes of the value, and its
						// length, without moving.
						n, _ := strconv.Atoi(f[1])
						if it.Valid() {
							fmt.Fprintf(&sb, "%s: %s len=%d\n", line, quote(it.ValuePrefix(n)), it.ValueLen())
						} else {
							fmt.Fprintf(&sb, "%s: .\n", line)
						}
						continue
					default:
						t.Fatalf("bad iter op %q", line)
					}
					if ok {
						fmt.Fprintf(&sb, "%s: %s=%s\n", line, quote(it.Key()), quote(it.Value()))
					} else {
						fmt.Fprintf(&sb, "%s: .\n", line)
					}
				}
				return sb.String()
			case "snapshot":
				s, err := db.NewSnapshot()
				if err != nil {
					return err.Error()
				}
				snaps[pos(0)] = s
				return "ok"
			case "release":
				snaps[pos(0)].Close()
				delete(snaps, pos(0))
				return "ok"
			case "reopen":
				if err := db.Close(); err != nil {
					return err.Error()
				}
				db = openTest(t, filepath.Join(dir, "db"))
				return "ok"
			case "flush":
				if err := db.Flush(); err != nil {
					return err.Error()
				}
				return "ok"
			case "compact":
				if err := db.CompactRange(parseCF(t, pos(0)), nil, nil); err != nil {
					return err.Error()
				}
				return "ok"
			case "checkpoint":
				if err := db.Checkpoint(filepath.Join(dir, pos(0))); err != nil {
					return err.Error()
				}
				return "ok"
			case "open-checkpoint":
				for _, s := range snaps {
					s.Close()
				}
				clear(snaps)
				if err := db.Close(); err != nil {
					return err.Error()
				}
				db = openTest(t, filepath.Join(dir, pos(0)))
				return "ok"
			default:
				t.Fatalf("unknown command %q", d.Cmd)
				return ""
			}
		})
	})
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	// Repeated open/close frees everything: under the race detector and
	// Debian's assertion-enabled RocksDB, a double free or a leaked handle
	// aborts the process.
	for i := 0; i < 20; i++ {
		db := openTest(t, dir)
		b := db.NewBatch()
		b.Put(CFKV, []byte(fmt.Sprintf("k%03d", i)), []byte("v"))
		if err := db.Write(b, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		it, err := db.NewIterator(CFKV, IterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		if n != i+1 {
			t.Fatalf("open %d: %d keys, want %d", i, n, i+1)
		}
		if err := db.Close(); !errors.Is(err, ErrOpenHandles) {
			t.Fatalf("Close with an open iterator: %v, want ErrOpenHandles", err)
		}
		it.Close()
		it.Close() // idempotent
		s, err := db.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); !errors.Is(err, ErrOpenHandles) {
			t.Fatalf("Close with an open snapshot: %v, want ErrOpenHandles", err)
		}
		s.Close()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); !errors.Is(err, ErrClosed) {
			t.Fatalf("second Close: %v, want ErrClosed", err)
		}
		if _, _, err := db.Get(CFKV, []byte("k")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Get after Close: %v", err)
		}
		if err := db.Write(db.NewBatch(), true); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
		if _, err := db.NewIterator(CFKV, IterOptions{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("NewIterator after Close: %v", err)
		}
		if _, err := db.Stats(); !errors.Is(err, ErrClosed) {
			t.Fatalf("Stats after Close: %v", err)
		}
	}
}

func TestOpenRejectsInvalidOptions(t *testing.T) {
	o := testOptions()
	o.BlockSizeBytes = 0
	if _, err := Open(t.TempDir(), o); err == nil {
		t.Fatal("Open accepted invalid options")
	}
}

// TestBatchEncoding checks the Go-built WriteBatch encoding against RocksDB
// for sizes around varint boundaries and every record type.
func TestBatchEncoding(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer db.Close()
	b := db.NewBatch()
	sizes := []int{0, 1, 127, 128, 16383, 16384, 1 << 20}
	for i, n := range sizes {
		for cf := CF(0); cf < NumCFs; cf++ {
			key := append([]byte{byte(i)}, bytes.Repeat([]byte{'k'}, n%1000)...)
			b.Put(cf, key, bytes.Repeat([]byte{byte(cf)}, n))
		}
	}
	b.Put(CFMeta, []byte("gone"), []byte("x"))
	b.Delete(CFMeta, []byte("gone"))
	for i := 0; i < 10; i++ {
		b.Put(CFLease, []byte{'e', byte(i)}, []byte("e"))
	}
	b.DeleteRange(CFLease, []byte{'e', 2}, []byte{'e', 8})
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		for cf := CF(0); cf < NumCFs; cf++ {
			key := append([]byte{byte(i)}, bytes.Repeat([]byte{'k'}, n%1000)...)
			v, ok, err := db.Get(cf, key)
			if err != nil || !ok || !bytes.Equal(v, bytes.Repeat([]byte{byte(cf)}, n)) {
				t.Fatalf("%s size %d: ok=%t err=%v len=%d", cf, n, ok, err, len(v))
			}
		}
	}
	if _, ok, _ := db.Get(CFMeta, []byte("gone")); ok {
		t.Fatal("deleted key still present")
	}
	it, _ := db.NewIterator(CFLease, IterOptions{Lower: []byte{'e'}, Upper: []byte{'f'}})
	defer it.Close()
	var got []byte
	for ok := it.First(); ok; ok = it.Next() {
		got = append(got, it.Key()[1])
	}
	if !bytes.Equal(got, []byte{0, 1, 8, 9}) {
		t.Fatalf("after DeleteRange: %v", got)
	}
	// Reset reuses the batch.
	b.Reset()
	if b.Count() != 0 || !b.Empty() {
		t.Fatal("Reset left writes behind")
	}
	b.Put(CFKV, []byte("again"), []byte("1"))
	if err := db.Write(b, false); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := db.Get(CFKV, []byte("again")); !ok || string(v) != "1" {
		t.Fatal("reused batch lost its write")
	}
}

// TestSnapshotIsolation has readers hold snapshots while a writer commits
// batches that each keep an invariant (the sum of two keys is constant).
func TestSnapshotIsolation(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer db.Close()
	put := func(a, b int) {
		bt := db.NewBatch()
		bt.Put(CFKV, []byte("a"), []byte(fmt.Sprint(a)))
		bt.Put(CFHistory, []byte("b"), []byte(fmt.Sprint(b)))
		if err := db.Write(bt, false); err != nil {
			t.Error(err)
		}
	}
	put(0, 100)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= 2000; i++ {
			put(i, 100-i)
		}
		close(stop)
	}()
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := db.NewSnapshot()
				if err != nil {
					t.Error(err)
					return
				}
				av, _, _ := s.Get(CFKV, []byte("a"))
				bv, _, _ := s.Get(CFHistory, []byte("b"))
				var a, b int
				fmt.Sscan(string(av), &a)
				fmt.Sscan(string(bv), &b)
				s.Close()
				if a+b != 100 {
					t.Errorf("torn read: a=%d b=%d", a, b)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestStats(t *testing.T) {
	db := openTest(t, t.TempDir())
	defer db.Close()
	b := db.NewBatch()
	val := bytes.Repeat([]byte("v"), 256)
	for i := 0; i < 20000; i++ {
		b.Put(CFKV, []byte(fmt.Sprintf("key%08d", i)), val)
		if b.Count() == 1000 {
			if err := db.Write(b, false); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	s, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemtableBytes == 0 {
		t.Fatalf("no memtable bytes after writes: %+v", s)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20000; i += 7 {
		if _, ok, err := db.Get(CFKV, []byte(fmt.Sprintf("key%08d", i))); !ok || err != nil {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
	}
	s, err = db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.LiveSSTBytes == 0 || s.TotalSSTBytes < s.LiveSSTBytes {
		t.Fatalf("SST sizes after flush: %+v", s)
	}
	if s.BlockCacheUsageBytes == 0 || s.BlockCacheCapacityBytes != 8<<20 {
		t.Fatalf("block cache: %+v", s)
	}
	if s.BlockCacheHits+s.BlockCacheMisses == 0 {
		t.Fatalf("statistics counted no block cache lookups: %+v", s)
	}
	if r := s.BlockCacheHitRate(); r < 0 || r > 1 {
		t.Fatalf("hit rate %v", r)
	}
}

func TestCheckpointIsIndependent(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, filepath.Join(dir, "db"))
	b := db.NewBatch()
	b.Put(CFKV, []byte("k"), []byte("before"))
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "cp")
	if err := db.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(cp); err == nil {
		t.Fatal("checkpoint into an existing directory succeeded")
	}
	b.Reset()
	b.Put(CFKV, []byte("k"), []byte("after"))
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, cp)
	defer c.Close()
	if v, _, _ := c.Get(CFKV, []byte("k")); string(v) != "before" {
		t.Fatalf("checkpoint sees %q", v)
	}
	if _, err := os.Stat(filepath.Join(cp, "CURRENT")); err != nil {
		t.Fatal(err)
	}
}

// TestCompressedBlockCache reads a store several times larger than its block
// cache: the compressed block cache must fill with the compressed blocks the
// block cache evicts, stay within its capacity, and every read must still
// return what was written. Without a compressed cache its usage stays 0.
func TestCompressedBlockCache(t *testing.T) {
	for _, zbytes := range []int64{0, 4 << 20} {
		t.Run(fmt.Sprint(zbytes), func(t *testing.T) {
			o := testOptions()
			o.BlockCacheBytes = 1 << 20
			o.CompressedBlockCacheBytes = zbytes
			o.UncompressedLevels = 0
			o.RowCacheBytes = 0
			db, err := Open(t.TempDir(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			value := func(i int) []byte { // compressible, distinct per key
				return bytes.Repeat([]byte(fmt.Sprintf("value-%08d|", i)), 20)
			}
			const n = 30000 // ~7 MiB of values: 7x the block cache
			b := db.NewBatch()
			for i := 0; i < n; i++ {
				b.Put(CFKV, []byte(fmt.Sprintf("key%08d", i)), value(i))
				if b.Count() == 1000 {
					if err := db.Write(b, false); err != nil {
						t.Fatal(err)
					}
					b.Reset()
				}
			}
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 2; round++ {
				for i := 0; i < n; i += 3 {
					v, ok, err := db.Get(CFKV, []byte(fmt.Sprintf("key%08d", i)))
					if err != nil || !ok || !bytes.Equal(v, value(i)) {
						t.Fatalf("get %d: %q %v %v", i, v, ok, err)
					}
				}
			}
			s, err := db.Stats()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case zbytes == 0 && s.CompressedBlockCacheUsageBytes != 0:
				t.Fatalf("no compressed cache configured, usage %d", s.CompressedBlockCacheUsageBytes)
			case zbytes > 0 && (s.CompressedBlockCacheUsageBytes == 0 || s.CompressedBlockCacheUsageBytes > uint64(zbytes)):
				t.Fatalf("compressed cache usage %d of %d", s.CompressedBlockCacheUsageBytes, zbytes)
			}
		})
	}
}
