// Package ddtest runs the data-driven test scripts of a package
// (github.com/cockroachdb/datadriven): every testdata/*.txt, each as a
// subtest. The fuzz corpora under testdata/fuzz are not scripts, which is
// why this replaces datadriven.Walk.
package ddtest

import (
	"path/filepath"
	"testing"
)

// Scripts runs fn on each testdata/*.txt of the calling package's
// directory, as a subtest named after the file. A package without scripts
// fails: its data-driven test would otherwise pass having run nothing.
func Scripts(t *testing.T, fn func(t *testing.T, path string)) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scripts in testdata: %v", err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) { fn(t, p) })
	}
}
