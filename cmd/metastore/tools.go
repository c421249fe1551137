package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/tuning"
)

// exportHeader is the first line of an export file.
type exportHeader struct {
	Export   int   `json:"metastore_export"`
	Revision int64 `json:"revision"`
	Count    int64 `json:"count"`
}

// exportRecord is one key of an export file. []byte fields are base64 in JSON.
type exportRecord struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          int64  `json:"lease"`
}

const exportPageLimit = 1000
const progressEvery = 10000

// toolExit maps a tool error to an exit status, printing it.
func toolExit(cmd string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "metastore %s: %v\n", cmd, err)
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return 1
}

func runExport(args []string) int { return toolExit("export", exportCmd(args)) }
func runImport(args []string) int { return toolExit("import", importCmd(args)) }
func runCheck(args []string) int  { return toolExit("check", checkCmd(args)) }

func splitEndpoints(s string) []string {
	var eps []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			eps = append(eps, p)
		}
	}
	return eps
}

func exportCmd(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: metastore export --endpoints EP [--prefix P | --key K [--range-end E]] [--rev R] --out FILE")
		fmt.Fprintln(fs.Output(), "Writes the key range at one revision as JSON lines: a header line, then one object per key")
		fmt.Fprintln(fs.Output(), `{"key","value" (base64),"create_revision","mod_revision","version","lease"}.`)
		fs.PrintDefaults()
	}
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	prefix := fs.String("prefix", "", "export keys with this prefix")
	key := fs.String("key", "", "first key of the range (with --range-end), or the single key")
	rangeEnd := fs.String("range-end", "", "end of the range (exclusive); \"\\x00\" means all keys >= --key")
	rev := fs.Int64("rev", 0, "revision to export (0: current)")
	out := fs.String("out", "", "output file")
	timeout := fs.Duration("dial-timeout", 5*time.Second, "dial timeout")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *out == "" {
		return usageError{errors.New("--out is required")}
	}
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })
	var start, end []byte
	switch {
	case setFlags["prefix"] && (setFlags["key"] || setFlags["range-end"]):
		return usageError{errors.New("--prefix and --key/--range-end are exclusive")}
	case setFlags["prefix"]:
		start = []byte(*prefix)
		end = []byte(clientv3.GetPrefixRangeEnd(*prefix))
		if len(start) == 0 {
			start, end = []byte{0}, []byte{0}
		}
	case setFlags["key"]:
		start = []byte(*key)
		if setFlags["range-end"] {
			end = []byte(*rangeEnd)
			if *rangeEnd == `\x00` {
				end = []byte{0}
			}
		}
	default:
		start, end = []byte{0}, []byte{0}
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: splitEndpoints(*endpoints), DialTimeout: *timeout})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx := context.Background()

	tmp := *out + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)

	// Resolve the revision first so every page reads the same one.
	atRev := *rev
	if atRev == 0 {
		resp, err := cli.Get(ctx, string(start), clientv3.WithRange(string(end)), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		atRev = resp.Header.Revision
	}
	// Count first so the header can carry it.
	cresp, err := cli.Get(ctx, string(start), clientv3.WithRange(string(end)), clientv3.WithCountOnly(), clientv3.WithRev(atRev))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(bw)
	if err := enc.Encode(exportHeader{Export: 1, Revision: atRev, Count: cresp.Count}); err != nil {
		return err
	}
	var n int64
	cur := start
	single := len(end) == 0
	for {
		opts := []clientv3.OpOption{clientv3.WithRev(atRev), clientv3.WithLimit(exportPageLimit)}
		if !single {
			opts = append(opts, clientv3.WithRange(string(end)))
		}
		resp, err := cli.Get(ctx, string(cur), opts...)
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if err := enc.Encode(exportRecord{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision,
				ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}); err != nil {
				return err
			}
			n++
			if n%progressEvery == 0 {
				fmt.Fprintf(os.Stderr, "export: %d keys\n", n)
			}
		}
		if single || !resp.More || len(resp.Kvs) == 0 {
			break
		}
		last := resp.Kvs[len(resp.Kvs)-1].Key
		cur = append(append([]byte{}, last...), 0)
	}
	if n != cresp.Count {
		return fmt.Errorf("exported %d keys but the count at revision %d was %d", n, atRev, cresp.Count)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "export: wrote %d keys at revision %d to %s\n", n, atRev, *out)
	return nil
}

func importCmd(args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: metastore import --endpoints EP --in FILE [--txn-ops 128]")
		fmt.Fprintln(fs.Output(), "Puts the keys of an export file back, in txns of up to --txn-ops puts.")
		fmt.Fprintln(fs.Output(), "Only keys and values are restored: revisions, versions and leases in the file are ignored")
		fmt.Fprintln(fs.Output(), "(keys get new revisions and no lease).")
		fs.PrintDefaults()
	}
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	in := fs.String("in", "", "export file to read")
	txnOps := fs.Int("txn-ops", 128, "maximum puts per txn (the server's --max-txn-ops bounds it)")
	timeout := fs.Duration("dial-timeout", 5*time.Second, "dial timeout")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *in == "" {
		return usageError{errors.New("--in is required")}
	}
	if *txnOps < 1 {
		return usageError{errors.New("--txn-ops must be at least 1")}
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: splitEndpoints(*endpoints), DialTimeout: *timeout})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx := context.Background()

	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	var ops []clientv3.Op
	var n int64
	var header *exportHeader
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return err
		}
		n += int64(len(ops))
		if n/progressEvery != (n-int64(len(ops)))/progressEvery {
			fmt.Fprintf(os.Stderr, "import: %d keys\n", n)
		}
		ops = ops[:0]
		return nil
	}
	for line := 1; ; line++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("%s: record %d: %w", *in, line, err)
		}
		if bytes.Contains(raw, []byte(`"metastore_export"`)) {
			var h exportHeader
			if err := json.Unmarshal(raw, &h); err != nil {
				return fmt.Errorf("%s: record %d: %w", *in, line, err)
			}
			if h.Export != 1 {
				return fmt.Errorf("%s: unsupported export format %d", *in, h.Export)
			}
			header = &h
			continue
		}
		var r exportRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("%s: record %d: %w", *in, line, err)
		}
		if len(r.Key) == 0 {
			return fmt.Errorf("%s: record %d: empty key", *in, line)
		}
		ops = append(ops, clientv3.OpPut(string(r.Key), string(r.Value)))
		if len(ops) >= *txnOps {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if header != nil && header.Count != n {
		return fmt.Errorf("imported %d keys but the file header says %d (truncated file?)", n, header.Count)
	}
	fmt.Fprintf(os.Stderr, "import: put %d keys from %s\n", n, *in)
	return nil
}

func checkCmd(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: metastore check --data-dir DIR")
		fmt.Fprintln(fs.Output(), "Offline consistency check of a member's data; the member must be stopped.")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", "", "data directory of the stopped member")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *dataDir == "" {
		return usageError{errors.New("--data-dir is required")}
	}
	dir := filepath.Join(*dataDir, "member", "engine")
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("no engine at %s: %w", dir, err)
	}
	db, err := engine.Open(dir, tuning.LowMemory())
	if err != nil {
		return fmt.Errorf("open engine %s (is the member still running?): %w", dir, err)
	}
	defer db.Close()
	st, err := mvcc.Open(db, mvcc.Config{}, nil)
	if err != nil {
		return fmt.Errorf("open mvcc store: %w", err)
	}
	defer st.Close()

	rev := st.Rev()
	fmt.Printf("revision: %d\n", rev)
	fmt.Printf("compacted revision: %d\n", st.CompactedRev())
	fmt.Printf("applied index: %d\n", st.AppliedIndex())
	if rev < st.CompactedRev() {
		return fmt.Errorf("revision %d is below the compacted revision %d", rev, st.CompactedRev())
	}
	hash, _, err := st.HashKV(rev)
	if err != nil {
		return fmt.Errorf("hashkv at revision %d: %w", rev, err)
	}
	fmt.Printf("hash: %d\n", hash)
	ctx := context.Background()
	cnt, err := st.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev, CountOnly: true})
	if err != nil {
		return fmt.Errorf("range all keys at revision %d: %w", rev, err)
	}
	fmt.Printf("keys: %d\n", cnt.Count)
	leases := st.Leases()
	fmt.Printf("leases: %d\n", len(leases))
	var problems []string
	attached := 0
	for _, l := range leases {
		keys, err := st.LeaseKeys(l.ID)
		if err != nil {
			problems = append(problems, fmt.Sprintf("lease %x: keys: %v", l.ID, err))
			continue
		}
		for _, k := range keys {
			attached++
			resp, err := st.Range(ctx, &pb.RangeRequest{Key: k, Revision: rev})
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("lease %x: key %q: %v", l.ID, k, err))
			case len(resp.Kvs) == 0:
				problems = append(problems, fmt.Sprintf("lease %x: attached key %q does not exist", l.ID, k))
			case resp.Kvs[0].Lease != l.ID:
				problems = append(problems, fmt.Sprintf("lease %x: key %q has lease %x", l.ID, k, resp.Kvs[0].Lease))
			}
		}
	}
	fmt.Printf("lease-attached keys: %d\n", attached)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Println("PROBLEM:", p)
		}
		return fmt.Errorf("%d problem(s) found", len(problems))
	}
	fmt.Println("OK")
	return nil
}
