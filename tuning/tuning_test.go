package tuning

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// errLines returns the messages joined in err, one per violation.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func checkErrLines(t *testing.T, err error, want []string) {
	t.Helper()
	got := errLines(err)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFieldTable checks that the fields table covers every Options field
// once, in declaration order, with unique keys.
func TestFieldTable(t *testing.T) {
	var o Options
	v := reflect.ValueOf(&o).Elem()
	if len(fields) != v.NumField() {
		t.Fatalf("fields has %d entries, Options has %d fields", len(fields), v.NumField())
	}
	for i, f := range fields {
		if reflect.ValueOf(f.ptr(&o)).Pointer() != v.Field(i).Addr().Pointer() {
			t.Errorf("fields[%d] (%s) is not Options.%s", i, f.key, v.Type().Field(i).Name)
		}
		if lookup(f.key) != &fields[i] {
			t.Errorf("key %s is not unique", f.key)
		}
	}
}

// normalize collapses the whitespace of a doc comment.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// docs returns the doc comments of the Options fields in options.go and of
// the top-level functions in presets.go, by name.
func docs(t *testing.T) (fieldDocs []string, funcDocs map[string]string) {
	fset := token.NewFileSet()
	funcDocs = make(map[string]string)
	for _, name := range []string{"options.go", "presets.go"} {
		file, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.TypeSpec:
				if st, ok := n.Type.(*ast.StructType); ok && n.Name.Name == "Options" {
					for _, f := range st.Fields.List {
						fieldDocs = append(fieldDocs, normalize(f.Doc.Text()))
					}
				}
			case *ast.FuncDecl:
				if n.Recv == nil {
					funcDocs[n.Name.Name] = normalize(n.Doc.Text())
				}
			}
			return true
		})
	}
	return fieldDocs, funcDocs
}

// TestFieldDocs checks each field's table doc against the first sentence of
// its doc comment, and Default against the default the comment states.
func TestFieldDocs(t *testing.T) {
	fieldDocs, _ := docs(t)
	if len(fieldDocs) != len(fields) {
		t.Fatalf("options.go documents %d fields, table has %d", len(fieldDocs), len(fields))
	}
	stated := regexp.MustCompile(`Default (\S+(?: [KMGT]iB)?)`)
	def := Default()
	for i, doc := range fieldDocs {
		f := &fields[i]
		first := doc
		if j := strings.Index(doc, ". "); j >= 0 {
			first = doc[:j+1]
		}
		if f.doc != first {
			t.Errorf("%s: doc %q, want %q", f.key, f.doc, first)
		}
		m := stated.FindStringSubmatch(doc)
		if m == nil {
			t.Errorf("%s: comment states no default", f.key)
			continue
		}
		var want Options
		if err := want.Set(f.key, strings.TrimSuffix(m[1], ".")); err != nil {
			t.Errorf("stated default: %v", err)
		} else if got, want := f.format(&def), f.format(&want); got != want {
			t.Errorf("Default %s = %s, comment states %s", f.key, got, want)
		}
	}
}

func TestPresets(t *testing.T) {
	_, funcDocs := docs(t)
	budget := regexp.MustCompile(`Memory budget: (\d+) MiB`)
	for _, tc := range []struct {
		name, fn string
		mib      int64
	}{
		{"default", "Default", 1536},
		{"large-volume", "LargeVolume", 2048},
		{"low-memory", "LowMemory", 96},
		{"read-heavy", "ReadHeavy", 2560},
		{"write-heavy", "WriteHeavy", 3328},
	} {
		o, err := Preset(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.MemoryBudgetBytes(); got != tc.mib<<20 {
			t.Errorf("%s: budget %d bytes, want %d MiB", tc.name, got, tc.mib)
		}
		if m := budget.FindStringSubmatch(funcDocs[tc.fn]); m == nil || m[1] != formatInt(tc.mib, false) {
			t.Errorf("%s: doc of %s states budget %v, want %d MiB", tc.name, tc.fn, m, tc.mib)
		}
		if err := o.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if back, err := Parse(o.String()); err != nil || back != o {
			t.Errorf("%s: round trip gave %#v, %v", tc.name, back, err)
		}
	}
	if got, want := strings.Join(PresetNames(), " "), "default large-volume low-memory read-heavy write-heavy"; got != want {
		t.Errorf("PresetNames = %s, want %s", got, want)
	}
	_, err := Preset("fast")
	checkErrLines(t, err, []string{`unknown preset "fast" (valid: default, large-volume, low-memory, read-heavy, write-heavy)`})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want []string
	}{
		{"default", func(*Options) {}, nil},
		{"cache", func(o *Options) { o.BlockCacheBytes = 0 }, []string{"block-cache-bytes = 0: must be positive"}},
		{"write buffer", func(o *Options) { o.WriteBufferBytes = -1 << 20 }, []string{"write-buffer-bytes = -1 MiB: must be positive"}},
		{"merge", func(o *Options) { o.MinWriteBufferNumberToMerge = 4 }, []string{"min-write-buffer-number-to-merge = 4: must be at least 1 and less than max-write-buffer-number (4)"}},
		{"jobs", func(o *Options) { o.MaxBackgroundJobs = 0 }, []string{"max-background-jobs = 0: must be positive"}},
		{"subcompactions", func(o *Options) { o.MaxSubcompactions = 0 }, []string{"max-subcompactions = 0: must be positive"}},
		{"block small", func(o *Options) { o.BlockSizeBytes = 512 }, []string{"block-size-bytes = 512: must be between 1 KiB and 4 MiB"}},
		{"block large", func(o *Options) { o.BlockSizeBytes = 8 << 20 }, []string{"block-size-bytes = 8 MiB: must be between 1 KiB and 4 MiB"}},
		{"bloom", func(o *Options) { o.BloomBitsPerKey = 64.5 }, []string{"bloom-bits-per-key = 64.5: must be between 0 and 64"}},
		{"slowdown", func(o *Options) { o.Level0SlowdownWritesTrigger = 3 }, []string{"level0-slowdown-writes-trigger = 3: must be at least level0-file-num-compaction-trigger (4)"}},
		{"stop", func(o *Options) { o.Level0StopWritesTrigger = 19 }, []string{"level0-stop-writes-trigger = 19: must be at least level0-slowdown-writes-trigger (20)"}},
		{"target file", func(o *Options) { o.TargetFileSizeBaseBytes = 0 }, []string{"target-file-size-base-bytes = 0: must be positive"}},
		{"compression", func(o *Options) { o.Compression = "lz5" }, []string{"compression = lz5: must be one of none, snappy, lz4, zstd"}},
		{"levels", func(o *Options) { o.UncompressedLevels = -1 }, []string{"uncompressed-levels = -1: must not be negative"}},
		{"open files", func(o *Options) { o.MaxOpenFiles = 15 }, []string{"max-open-files = 15: must be -1 or at least 16"}},
		{"wal", func(o *Options) { o.WALRecovery = "skip" }, []string{"wal-recovery = skip: must be one of tolerate-corrupted-tail, absolute-consistency, point-in-time"}},
		{"all at once", func(o *Options) {
			o.MaxWriteBufferNumber = 0
			o.Level0FileNumCompactionTrigger = 0
			o.BottommostCompression = ""
			o.BytesPerSync = -1
			o.WALBytesPerSync = -1
			o.MaxTotalWALBytes = -1
			o.MinBlobBytes = -1
			o.RateLimitBytesPerSec = -1
		}, []string{
			"max-write-buffer-number = 0: must be positive",
			"min-write-buffer-number-to-merge = 1: must be at least 1 and less than max-write-buffer-number (0)",
			"level0-file-num-compaction-trigger = 0: must be positive",
			"bottommost-compression = : must be one of none, snappy, lz4, zstd",
			"bytes-per-sync = -1: must not be negative",
			"wal-bytes-per-sync = -1: must not be negative",
			"max-total-wal-bytes = -1: must not be negative",
			"min-blob-bytes = -1: must not be negative",
			"rate-limit-bytes-per-sec = -1: must not be negative",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Default()
			tc.edit(&o)
			checkErrLines(t, o.Validate(), tc.want)
		})
	}
}

func TestParseErrors(t *testing.T) {
	_, err := Parse(`# tuned for node 3
block-cache-bytes = 1 GiB
bloom-bits-per-key
cache-size = 1 GiB
block-cache-bytes = 2 GiB
write-buffer-bytes = lots
statistics = yes   # was true
compression = brotli
max-open-files = 1.5
`)
	checkErrLines(t, err, []string{
		`line 3: want key = value, got "bloom-bits-per-key"`,
		`line 4: unknown key "cache-size"`,
		`line 5: duplicate key "block-cache-bytes" (first set on line 2)`,
		`line 6: write-buffer-bytes: invalid value "lots": want a byte count such as 65536, 64 MiB or 64MB`,
		`line 7: statistics: invalid value "yes": want true or false`,
		`line 8: compression: invalid value "brotli": must be one of none, snappy, lz4, zstd`,
		`line 9: max-open-files: invalid value "1.5": want an integer`,
	})

	// Values that parse but do not validate name their line; defaults do not.
	_, err = Parse("\nlevel0-file-num-compaction-trigger = 30\nmax-open-files = 10\n")
	checkErrLines(t, err, []string{
		"level0-slowdown-writes-trigger = 20: must be at least level0-file-num-compaction-trigger (30)",
		"line 3: max-open-files = 10: must be -1 or at least 16",
	})
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // -1: invalid
	}{
		{"0", 0}, {"4096", 4096}, {"+7", 7}, {"4 KiB", 4 << 10}, {"4KiB", 4 << 10}, {" 64 MiB ", 64 << 20},
		{"2 GiB", 2 << 30}, {"1 TiB", 1 << 40}, {"4 KB", 4000}, {"64MB", 64e6}, {"2 GB", 2e9}, {"1 TB", 1e12},
		{"-3 MiB", -3 << 20}, {"8388607 TiB", 8388607 << 40},
		{"", -1}, {"MiB", -1}, {"1.5 GiB", -1}, {"1 mib", -1}, {"1 MiB x", -1}, {"1 M", -1}, {"0x10", -1},
		{"8388608 TiB", -1}, {"99999999999999999999", -1},
	} {
		o := Default()
		err := o.Set("block-cache-bytes", tc.in)
		switch {
		case tc.want == -1 && err == nil:
			t.Errorf("Set(%q) = %d, want error", tc.in, o.BlockCacheBytes)
		case tc.want != -1 && (err != nil || o.BlockCacheBytes != tc.want):
			t.Errorf("Set(%q) = %d, %v, want %d", tc.in, o.BlockCacheBytes, err, tc.want)
		case tc.want == -1 && o != Default():
			t.Errorf("failed Set(%q) changed the options", tc.in)
		}
	}
	for n, want := range map[int64]string{0: "0", 1000: "1000", 3 << 10: "3 KiB", 1536 << 20: "1536 MiB", 1 << 40: "1 TiB", -1 << 30: "-1 GiB"} {
		if got := formatInt(n, true); got != want {
			t.Errorf("formatInt(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSetAndOverrides(t *testing.T) {
	o := Default()
	for _, kv := range [][2]string{
		{"bloom-bits-per-key", "12.5"}, {"blob-files", "true"}, {"compression", "zstd"},
		{"wal-recovery", "absolute-consistency"}, {"max-open-files", "-1"}, {"block-size-bytes", "32 KiB"},
	} {
		if err := o.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := Default()
	want.BloomBitsPerKey, want.BlobFiles, want.Compression = 12.5, true, CompressionZSTD
	want.WALRecovery, want.BlockSizeBytes = WALRecoveryAbsolute, 32<<10
	if o != want {
		t.Errorf("after Set: %#v, want %#v", o, want)
	}
	checkErrLines(t, o.Set("cache", "1"), []string{`unknown key "cache"`})

	got, err := ApplyOverrides(LowMemory(), []string{"block-cache-bytes=64MiB", " max-write-buffer-number = 3", "block-cache-bytes=128 MiB"})
	if err != nil || got.BlockCacheBytes != 128<<20 || got.MaxWriteBufferNumber != 3 {
		t.Errorf("ApplyOverrides = %#v, %v", got, err)
	}
	_, err = ApplyOverrides(Default(), []string{"statistics", "nope=1", "max-subcompactions=two"})
	checkErrLines(t, err, []string{
		`override "statistics": want key=value`,
		`override "nope=1": unknown key "nope"`,
		`override "max-subcompactions=two": max-subcompactions: invalid value "two": want an integer`,
	})
	_, err = ApplyOverrides(Default(), []string{"max-write-buffer-number=1"})
	checkErrLines(t, err, []string{"min-write-buffer-number-to-merge = 1: must be at least 1 and less than max-write-buffer-number (1)"})
}

func FuzzParse(f *testing.F) {
	for _, name := range PresetNames() {
		o, _ := Preset(name)
		f.Add(o.String())
	}
	for _, s := range []string{
		"", "block-cache-bytes = 1 GiB # more", "bloom-bits-per-key = 1e1\n", "a = b = c",
		"level0-stop-writes-trigger = 2", "bloom-bits-per-key = NaN", "block-size-bytes=-0 KiB\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		o, err := Parse(text)
		if err != nil {
			return
		}
		back, err := Parse(o.String())
		if err != nil || back != o {
			t.Fatalf("Parse(%q) = %#v; reparsing its String gave %#v, %v", text, o, back, err)
		}
	})
}

func TestParseOverKeepsBase(t *testing.T) {
	base := LowMemory()
	o, err := ParseOver(base, "bloom-bits-per-key = 12\n")
	if err != nil {
		t.Fatal(err)
	}
	want := base
	want.BloomBitsPerKey = 12
	if o != want {
		t.Fatalf("ParseOver changed more than the file says:\n got %+v\nwant %+v", o, want)
	}
}
