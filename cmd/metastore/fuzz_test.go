package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzUntarSnapshot unpacks arbitrary bytes as a snapshot's tar payload
// (the decoder of `metastore snapshot restore`): it fails or writes regular
// files directly inside the target directory, never anywhere else, and
// never panics.
func FuzzUntarSnapshot(f *testing.F) {
	tarOf := func(entries ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			if err := tw.WriteHeader(h); err != nil {
				f.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	f.Add(tarOf(&tar.Header{Name: "CURRENT", Typeflag: tar.TypeReg, Size: 16, Mode: 0o600}, &tar.Header{Name: "000009.sst", Typeflag: tar.TypeReg, Size: 100, Mode: 0o600}))
	f.Add(tarOf(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600}))
	f.Add(tarOf(&tar.Header{Name: "sub/file", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600}))
	f.Add(tarOf(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}))
	f.Add(tarOf(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1}, &tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1}))
	f.Add([]byte("not a tar stream"))
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, payload []byte) {
		work, err := os.MkdirTemp(root, "case")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(work)
		file := filepath.Join(work, "snapshot.db")
		if err := os.WriteFile(file, payload, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(work, "out")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		prog := newProgressTo(io.Discard, false, "restore", unitBytes, int64(len(payload)), time.Now)
		untarSnapshot(file, int64(len(payload)), dir, prog)
		err = filepath.Walk(work, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			switch {
			case p == work || p == file || p == dir:
			case filepath.Dir(p) == dir && info.Mode().IsRegular():
			default:
				t.Fatalf("untar left %s (mode %v) outside the flat target directory %s", p, info.Mode(), dir)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
