package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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

// exportPageLimitKeys is how many keys export reads per Range request.
const exportPageLimitKeys = 1000

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

// clientFlags are the connection flags the online tools share, with
// etcdctl's names: --endpoints, --user name:password, --cacert, --cert,
// --key, --dial-timeout.
type clientFlags struct {
	endpoints   string
	user        string
	cacert      string
	cert, key   string
	dialTimeout time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.endpoints, "endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	fs.StringVar(&c.user, "user", "", "name:password of the user to authenticate as (auth on)")
	fs.StringVar(&c.cacert, "cacert", "", "verify the server's certificate with this CA bundle (https endpoints)")
	fs.StringVar(&c.cert, "cert", "", "client certificate for TLS")
	fs.StringVar(&c.key, "key", "", "client certificate's key for TLS")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 5*time.Second, "dial timeout")
}

// client connects as the flags say.
func (c *clientFlags) client() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: splitEndpoints(c.endpoints), DialTimeout: c.dialTimeout, Logger: zap.NewNop()}
	if c.user != "" {
		name, pw, ok := strings.Cut(c.user, ":")
		if !ok {
			return nil, usageError{errors.New("--user must be name:password")}
		}
		cfg.Username, cfg.Password = name, pw
	}
	if c.cacert != "" || c.cert != "" || c.key != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.cacert != "" {
			pem, err := os.ReadFile(c.cacert)
			if err != nil {
				return nil, fmt.Errorf("--cacert: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--cacert %s: no PEM certificate", c.cacert)
			}
		}
		if (c.cert == "") != (c.key == "") {
			return nil, usageError{errors.New("--cert and --key go together")}
		}
		if c.cert != "" {
			kp, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{kp}
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

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
		fmt.Fprintln(fs.Output(), "usage: metastore export --endpoints EP [--prefix P | --start-key K [--range-end E]] [--rev R] --out FILE")
		fmt.Fprintln(fs.Output(), "Writes the key range at one revision as JSON lines: a header line, then one object per key")
		fmt.Fprintln(fs.Output(), `{"key","value" (base64),"create_revision","mod_revision","version","lease"}.`)
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	prefix := fs.String("prefix", "", "export keys with this prefix")
	// --start-key, not etcdctl's positional key: --key is the TLS key.
	key := fs.String("start-key", "", "first key of the range (with --range-end), or the single key")
	rangeEnd := fs.String("range-end", "", "end of the range (exclusive); \"\\x00\" means all keys >= --start-key")
	rev := fs.Int64("rev", 0, "revision to export (0: current)")
	out := fs.String("out", "", "output file")
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
	case setFlags["prefix"] && (setFlags["start-key"] || setFlags["range-end"]):
		return usageError{errors.New("--prefix and --start-key/--range-end are exclusive")}
	case setFlags["prefix"]:
		start = []byte(*prefix)
		end = []byte(clientv3.GetPrefixRangeEnd(*prefix))
		if len(start) == 0 {
			start, end = []byte{0}, []byte{0}
		}
	case setFlags["start-key"]:
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

	cli, err := cf.client()
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
	prog := newProgress("export", unitKeys, cresp.Count)
	defer prog.Stop()
	var n int64
	cur := start
	single := len(end) == 0
	for {
		opts := []clientv3.OpOption{clientv3.WithRev(atRev), clientv3.WithLimit(exportPageLimitKeys)}
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
			prog.Add(1)
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
	prog.Done(fmt.Sprintf("wrote %d keys at revision %d to %s", n, atRev, *out))
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
	var cf clientFlags
	cf.register(fs)
	in := fs.String("in", "", "export file to read")
	txnOps := fs.Int("txn-ops", 128, "maximum puts per txn (the server's --max-txn-ops bounds it)")
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
	cli, err := cf.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx := context.Background()

	prog := newProgress("import", unitKeys, 0) // the header gives the total
	defer prog.Stop()
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
		prog.Add(int64(len(ops)))
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
			prog.SetTotal(h.Count)
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
	prog.Done(fmt.Sprintf("put %d keys from %s", n, *in))
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
	prog := newProgress("check leases", unitLeases, int64(len(leases)))
	defer prog.Stop()
	for _, l := range leases {
		prog.Add(1)
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
	prog.Done(fmt.Sprintf("checked %d leases", len(leases)))
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

func runCompact(args []string) int { return toolExit("compact", compactCmd(args)) }
func runStatus(args []string) int  { return toolExit("status", statusCmd(args)) }

// compactCmd compacts the key-value history to a revision, given outright
// or as the number of recent revisions to keep.
func compactCmd(args []string) error {
	fs := flag.NewFlagSet("compact", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: metastore compact --endpoints EP (REV | --keep N) [--physical]")
		fmt.Fprintln(fs.Output(), "Compacts the history below REV, or below the current revision minus N.")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	keep := fs.Int64("keep", 0, "keep the last N revisions: compact to the current revision minus N")
	physical := fs.Bool("physical", false, "wait until the compaction is applied by every member's engine")
	timeout := fs.Duration("command-timeout", time.Minute, "timeout of the compaction request")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	keepSet := false
	fs.Visit(func(f *flag.Flag) { keepSet = keepSet || f.Name == "keep" })
	var rev int64
	switch {
	case keepSet && fs.NArg() > 0:
		return usageError{errors.New("give REV or --keep, not both")}
	case keepSet && *keep < 0:
		return usageError{errors.New("--keep must not be negative")}
	case !keepSet && fs.NArg() != 1:
		return usageError{errors.New("want REV or --keep N")}
	case !keepSet:
		var err error
		if rev, err = strconv.ParseInt(fs.Arg(0), 10, 64); err != nil || rev <= 0 {
			return usageError{fmt.Errorf("REV %q is not a positive revision", fs.Arg(0))}
		}
	}
	cli, err := cf.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if keepSet {
		resp, err := cli.Get(ctx, "compact-probe", clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		rev = resp.Header.Revision - *keep
		if rev < 1 {
			return fmt.Errorf("current revision %d has fewer than --keep %d revisions before it: nothing to compact", resp.Header.Revision, *keep)
		}
	}
	var opts []clientv3.CompactOption
	if *physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	if _, err := cli.Compact(ctx, rev, opts...); err != nil {
		return err
	}
	fmt.Printf("compacted revision %d\n", rev)
	return nil
}

// endpointStatus is one line of metastore status.
type endpointStatus struct {
	Endpoint         string   `json:"endpoint"`
	MemberID         string   `json:"member_id,omitempty"`
	Version          string   `json:"version,omitempty"`
	DBSizeBytes      int64    `json:"db_size_bytes"`
	IsLeader         bool     `json:"is_leader"`
	IsLearner        bool     `json:"is_learner"`
	RaftTerm         uint64   `json:"raft_term"`
	RaftIndex        uint64   `json:"raft_index"`
	RaftAppliedIndex uint64   `json:"raft_applied_index"`
	Revision         int64    `json:"revision"`
	CompactRevision  int64    `json:"compact_revision"`
	HashRevision     int64    `json:"hash_revision"`
	Hash             uint32   `json:"hash"`
	Errors           []string `json:"errors,omitempty"`
}

// statusCmd reports every member's state and checks that they agree: the
// same leader and HashKV at one revision, no alarms, every member answering.
func statusCmd(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: metastore status --endpoints EP[,EP...] [--cluster] [-w table|json]")
		fmt.Fprintln(fs.Output(), "Shows each member's status and HashKV at one revision; exits 1 when a member")
		fmt.Fprintln(fs.Output(), "does not answer, reports an error or alarm, or the hashes or leaders differ.")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	cluster := fs.Bool("cluster", false, "ask every member listed by the cluster, not only --endpoints")
	writeOut := fs.String("w", "table", "output format: table or json")
	timeout := fs.Duration("command-timeout", 10*time.Second, "timeout of each member's requests")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *writeOut != "table" && *writeOut != "json" {
		return usageError{fmt.Errorf("-w %q: want table or json", *writeOut)}
	}
	cli, err := cf.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	eps := splitEndpoints(cf.endpoints)
	var unpublished []string
	if *cluster {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		ml, err := cli.MemberList(ctx)
		cancel()
		if err != nil {
			return err
		}
		eps = nil
		for _, m := range ml.Members {
			if len(m.ClientURLs) == 0 {
				unpublished = append(unpublished, fmt.Sprintf("member %s (%x) has not published its client URLs (not started?)", m.Name, m.ID))
			} else {
				eps = append(eps, m.ClientURLs[0])
			}
		}
	}
	if len(eps) == 0 && len(unpublished) > 0 {
		return errors.New(strings.Join(unpublished, "; "))
	}
	if len(eps) == 0 {
		return usageError{errors.New("no endpoints")}
	}
	sts := make([]*endpointStatus, len(eps))
	minRev := int64(0)
	for i, ep := range eps {
		st := &endpointStatus{Endpoint: ep}
		sts[i] = st
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		resp, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			st.Errors = append(st.Errors, err.Error())
			continue
		}
		st.MemberID = fmt.Sprintf("%x", resp.Header.MemberId)
		st.Version, st.DBSizeBytes = resp.Version, resp.DbSize
		st.IsLeader, st.IsLearner = resp.Leader == resp.Header.MemberId, resp.IsLearner
		st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex = resp.RaftTerm, resp.RaftIndex, resp.RaftAppliedIndex
		st.Revision = resp.Header.Revision
		st.Errors = append(st.Errors, resp.Errors...)
		if minRev == 0 || st.Revision < minRev {
			minRev = st.Revision
		}
	}
	// Every member answering has applied minRev: hash them all there.
	problems := unpublished
	hashes := map[uint32][]string{}
	leaders := 0
	for _, st := range sts {
		if st.MemberID == "" {
			problems = append(problems, st.Endpoint+": "+strings.Join(st.Errors, "; "))
			continue
		}
		if st.IsLeader {
			leaders++
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		hr, err := cli.HashKV(ctx, st.Endpoint, minRev)
		cancel()
		if err != nil {
			st.Errors = append(st.Errors, "hashkv: "+err.Error())
		} else {
			st.HashRevision, st.Hash, st.CompactRevision = minRev, hr.Hash, hr.CompactRevision
			hashes[hr.Hash] = append(hashes[hr.Hash], st.Endpoint)
		}
		for _, e := range st.Errors {
			problems = append(problems, st.Endpoint+": "+e)
		}
	}
	if len(hashes) > 1 {
		problems = append(problems, fmt.Sprintf("HashKV at revision %d differs between members: %v", minRev, hashes))
	}
	if leaders > 1 {
		problems = append(problems, fmt.Sprintf("%d members say they are the leader", leaders))
	}
	if *writeOut == "json" {
		b, err := json.MarshalIndent(sts, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ENDPOINT\tID\tVERSION\tDB SIZE\tLEADER\tLEARNER\tTERM\tINDEX\tAPPLIED\tREVISION\tCOMPACTED\tHASH\tERRORS")
		for _, st := range sts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", st.Endpoint, st.MemberID, st.Version,
				formatBytes(st.DBSizeBytes), st.IsLeader, st.IsLearner, st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex,
				st.Revision, st.CompactRevision, st.Hash, strings.Join(st.Errors, "; "))
		}
		tw.Flush()
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "PROBLEM:", p)
		}
		return fmt.Errorf("%d problem(s) found", len(problems))
	}
	fmt.Fprintf(os.Stderr, "status: %d members agree (HashKV %d at revision %d)\n", len(sts), sts[0].Hash, minRev)
	return nil
}
