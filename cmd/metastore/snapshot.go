package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/metastore/metastore/server"
)

func runSnapshot(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: metastore snapshot save|restore|status ...")
		return exitUsage
	}
	var err error
	switch args[0] {
	case "save":
		err = snapshotSave(args[1:])
	case "restore":
		err = snapshotRestore(args[1:])
	case "status":
		err = snapshotStatus(args[1:])
	default:
		fmt.Fprintf(os.Stderr, "metastore snapshot: unknown command %q (save, restore, status)\n", args[0])
		return exitUsage
	}
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, "metastore snapshot %s: %v\n", args[0], err)
			return exitUsage
		}
		fmt.Fprintf(os.Stderr, "metastore snapshot %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// snapshotSave streams a snapshot from a member into FILE (like etcdctl
// snapshot save), writing to FILE.part and renaming it when complete.
func snapshotSave(args []string) error {
	fs := flag.NewFlagSet("save", flag.ContinueOnError)
	var cf clientFlags // tools.go
	cf.register(fs)
	timeout := fs.Duration("command-timeout", 5*time.Minute, "timeout for the whole transfer")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("want exactly one FILE argument")}
	}
	path := fs.Arg(0)
	cli, err := cf.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// The raw stream rather than cli.Snapshot: its RemainingBytes gives the
	// progress bar its total.
	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		return rpctypes.Error(err)
	}
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	prog := newProgress("snapshot save", unitBytes, 0)
	defer prog.Stop()
	var n int64
	for {
		resp, rerr := stream.Recv()
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rpctypes.Error(rerr) // etcd's client error, as etcdctl prints it
			break
		}
		if n == 0 {
			prog.SetTotal(int64(len(resp.Blob)) + int64(resp.RemainingBytes))
		}
		if _, err = f.Write(resp.Blob); err != nil {
			break
		}
		n += int64(len(resp.Blob))
		prog.Add(int64(len(resp.Blob)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		return err
	}
	if _, _, err := verifySnapshotFile(part); err != nil {
		os.Remove(part)
		return err
	}
	if err := os.Rename(part, path); err != nil {
		return err
	}
	prog.Done(fmt.Sprintf("%s saved", formatBytes(n)))
	fmt.Printf("Snapshot saved at %s (%d bytes)\n", path, n)
	return nil
}

// verifySnapshotFile checks the SHA-256 trailer of a snapshot file and
// returns the size of its payload and the hash.
func verifySnapshotFile(path string) (int64, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	size := info.Size() - sha256.Size
	if size <= 0 {
		return 0, nil, fmt.Errorf("%s is too small to be a snapshot", path)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, size); err != nil {
		return 0, nil, err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return 0, nil, err
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return 0, nil, fmt.Errorf("%s: snapshot hash mismatch (file is damaged or incomplete)", path)
	}
	return size, want, nil
}

func snapshotStatus(args []string) error {
	if len(args) != 1 {
		return usageError{errors.New("want exactly one FILE argument")}
	}
	size, hash, err := verifySnapshotFile(args[0])
	if err != nil {
		return err
	}
	fmt.Printf("%s: ok, %d bytes, sha256 %x\n", args[0], size, hash)
	return nil
}

// snapshotRestore builds a new member data directory from a snapshot file:
// the key-value state, leases and compaction state of the snapshot, with a
// new cluster identity from the given flags (as etcdutl snapshot restore).
func snapshotRestore(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageError{errors.New("usage: metastore snapshot restore FILE [flags]")}
	}
	path := args[0]
	f := newFlags("restore")
	skipHash := f.fs.Bool("skip-hash-check", false, "do not verify the snapshot's SHA-256 trailer")
	if err := f.fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	cfg := f.cfg
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if _, err := os.Stat(cfg.DataDir); err == nil {
		return fmt.Errorf("data-dir %q exists; restore into a new directory", cfg.DataDir)
	}
	var size int64
	if *skipHash {
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		size = info.Size() - sha256.Size
	} else {
		var err error
		if size, _, err = verifySnapshotFile(path); err != nil {
			return err
		}
	}
	tmp := cfg.DataDir + ".restoring"
	os.RemoveAll(tmp)
	engineDir := filepath.Join(tmp, "member", "engine")
	if err := os.MkdirAll(engineDir, 0o700); err != nil {
		return err
	}
	prog := newProgress("snapshot restore", unitBytes, size)
	defer prog.Stop()
	if err := untarSnapshot(path, size, engineDir, prog); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := server.PrepareRestoredEngine(engineDir, cfg.Engine); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, cfg.DataDir); err != nil {
		return err
	}
	prog.Done(fmt.Sprintf("%s restored", formatBytes(size)))
	fmt.Printf("restored snapshot %s into %s; start the member with --initial-cluster-state new\n", path, cfg.DataDir)
	return nil
}

// untarSnapshot unpacks the first size bytes of the snapshot at path into
// dir, counting the bytes read in prog.
func untarSnapshot(path string, size int64, dir string, prog *progress) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(io.TeeReader(io.LimitReader(f, size), prog))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading snapshot: %w", err)
		}
		name := filepath.Base(h.Name)
		if name != h.Name || name == "." || name == ".." || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("snapshot has an unexpected entry %q", h.Name)
		}
		out, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}
