package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Configuration sources, with etcd 3.6's precedence (etcdmain/config.go):
//
//   - --config-file FILE, or $ETCD_CONFIG_FILE / $METASTORE_CONFIG_FILE
//     when the flag is absent: the file alone configures the member; every
//     other flag and environment variable is ignored (and logged as such).
//     Its keys are the flag names (name, data-dir, listen-client-urls as a
//     comma-separated string, heartbeat-interval in ms, ...), etcd's YAML
//     keys, beside MetaStore's own (engine-preset, engine-options-file,
//     and engine-options: an options-file block). Keys that name no flag
//     are ignored with a warning, as etcd ignores them.
//   - otherwise command-line flags, then $METASTORE_<FLAG>, then
//     $ETCD_<FLAG> (upper snake case: ETCD_LISTEN_CLIENT_URLS), then the
//     defaults. A flag given on the command line wins over the environment.
//
//	metastore config check FILE      validate FILE, print every violation, exit 1 on any
//	metastore config dump [FLAGS]    print the effective configuration as a config file

// Environment prefixes, the more specific first.
var envPrefixes = []string{"METASTORE", "ETCD"}

// engineOptionsKey is the config-file key of an inline engine options block,
// in the format of --engine-options-file.
const engineOptionsKey = "engine-options"

// flagToEnv is etcd's flags.FlagToEnv.
func flagToEnv(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// uint32Flag is a flag.Value for a uint32 field (--max-concurrent-streams)
// that prints its value, so that config dump can write it.
type uint32Flag struct{ p *uint32 }

func (u uint32Flag) String() string {
	if u.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*u.p), 10)
}

func (u uint32Flag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return err
	}
	*u.p = uint32(n)
	return nil
}

// registerServerFlags adds the flags of the HTTP side, metrics and logging,
// and --config-file.
func (f *flags) registerServerFlags() {
	c, fs := &f.cfg, f.fs
	fs.StringVar(&f.configFile, "config-file", "", "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.")
	fs.Var((*urlsFlag)(&c.ListenMetricsURLs), "listen-metrics-urls", "List of URLs to listen on for the metrics and health endpoints.")
	fs.StringVar(&c.Metrics, "metrics", c.Metrics, "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", false, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"")
	fs.BoolVar(&c.EnableGRPCGateway, "enable-grpc-gateway", c.EnableGRPCGateway, "Enable GRPC gateway.")
	fs.DurationVar(&c.WarningApplyDuration, "warning-apply-duration", c.WarningApplyDuration, "Time duration after which a warning is generated if request takes more time.")
	fs.BoolVar(&c.InitialCorruptCheck, "experimental-initial-corrupt-check", c.InitialCorruptCheck, "Enable to check data corruption before serving any client/peer traffic.")
	fs.DurationVar(&c.CorruptCheckTime, "experimental-corrupt-check-time", c.CorruptCheckTime, "Duration of time between cluster corruption check passes.")
	f.log.register(fs)
}

// applySources applies the environment after the command line was
// parsed, or, when a config file is named, returns fresh flags set from
// that file alone: the caller continues with them.
func (f *flags) applySources() (*flags, error) {
	path := f.configFile
	if path == "" {
		for _, p := range envPrefixes {
			if path = os.Getenv(flagToEnv(p, "config-file")); path != "" {
				break
			}
		}
	}
	if path == "" {
		return nil, f.applyEnv()
	}
	var ignored []string
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name != "config-file" {
			ignored = append(ignored, "--"+fl.Name)
		}
	})
	cf := newFlags(f.fs.Name())
	cf.configFile = path
	cf.warnings = append(cf.warnings, "loaded server configuration from "+path+"; other command line flags and environment variables are ignored")
	if len(ignored) > 0 {
		cf.warnings = append(cf.warnings, "ignored command line flags: "+strings.Join(ignored, " "))
	}
	return cf, cf.loadConfigFile(path)
}

// applyEnv sets every flag absent from the command line from the
// environment, as etcd's flags.SetFlagsFromEnv, METASTORE_ before ETCD_.
func (f *flags) applyEnv() error {
	onCommandLine := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { onCommandLine[fl.Name] = true })
	known := map[string]bool{}
	var errs []error
	f.fs.VisitAll(func(fl *flag.Flag) {
		fromEnv := false
		for _, p := range envPrefixes {
			key := flagToEnv(p, fl.Name)
			known[key] = true
			v, ok := os.LookupEnv(key)
			switch {
			case !ok:
			case onCommandLine[fl.Name]:
				f.warnings = append(f.warnings, fmt.Sprintf("ignored environment variable %s: --%s is set on the command line", key, fl.Name))
			case fromEnv:
				f.warnings = append(f.warnings, fmt.Sprintf("ignored environment variable %s: %s is set", key, flagToEnv(envPrefixes[0], fl.Name)))
			default:
				if err := f.fs.Set(fl.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, key, err))
				}
				fromEnv = true // METASTORE_ wins over ETCD_
			}
		}
	})
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(key, "ETCD_") || strings.HasPrefix(key, "METASTORE_")) && !known[key] && key != cpuProfileEnv {
			f.warnings = append(f.warnings, "unrecognized environment variable "+key)
		}
	}
	return errors.Join(errs...)
}

// loadConfigFile sets the flags from the YAML file at path, reporting every
// bad value at once. Unknown keys are warnings.
func (f *flags) loadConfigFile(path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config-file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return fmt.Errorf("--config-file %s: %w", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	var blocks []string // TLS blocks
	for _, k := range keys {
		v := doc[k]
		if k == engineOptionsKey {
			s, ok := v.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %s must be a string block in the --engine-options-file format", path, k))
				continue
			}
			f.engineOptionsText = s
			continue
		}
		if _, ok := transportSecurityKeys[k]; ok {
			blocks = append(blocks, k) // after the top-level keys, to find conflicts
			continue
		}
		fl := f.fs.Lookup(k)
		if fl == nil || k == "config-file" {
			f.warnings = append(f.warnings, fmt.Sprintf("%s: unknown key %q ignored", path, k))
			continue
		}
		if v == nil {
			continue
		}
		s, err := yamlFlagValue(fl, v)
		if err == nil {
			err = f.fs.Set(k, s)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", path, k, err))
		}
	}
	for _, k := range blocks {
		errs = append(errs, f.loadTransportSecurity(path, k, transportSecurityKeys[k], doc[k])...)
	}
	return errors.Join(errs...)
}

// yamlFlagValue renders a YAML value as the flag's command-line text.
// Lists are joined with commas; a number for a duration flag is
// nanoseconds, as etcd's time.Duration fields read it.
func yamlFlagValue(fl *flag.Flag, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		if isDurationFlag(fl) {
			return time.Duration(v).String(), nil
		}
		if v == math.Trunc(v) && math.Abs(v) < 1<<63 {
			return strconv.FormatInt(int64(v), 10), nil
		}
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, err := yamlFlagValue(fl, e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("want a scalar or a list, not %T", v)
	}
}

// isDurationFlag reports whether fl takes a Go duration ("100ms").
func isDurationFlag(fl *flag.Flag) bool {
	if _, err := strconv.ParseFloat(fl.DefValue, 64); err == nil {
		return false
	}
	_, err := time.ParseDuration(fl.DefValue)
	return err == nil
}

// runConfig runs "metastore config check FILE" and "metastore config dump".
func runConfig(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: metastore config check FILE | metastore config dump [FLAGS]")
		return exitUsage
	}
	switch args[0] {
	case "check":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: metastore config check FILE")
			return exitUsage
		}
		return configCheck(args[1])
	case "dump":
		return configDump(args[1:])
	default:
		fmt.Fprintf(os.Stderr, "metastore config: unknown command %q (check, dump)\n", args[0])
		return exitUsage
	}
}

// configCheck validates a config file and prints every violation: every
// bad key at once, then, when the keys are fine, every invalid setting.
func configCheck(path string) int {
	f := newFlags("metastore")
	err := f.parse([]string{"--config-file", path})
	for _, w := range f.warnings {
		fmt.Fprintln(os.Stderr, "warning: "+w)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "error: "+line)
		}
		return 1
	}
	fmt.Printf("%s: OK\n", path)
	return 0
}

// configDump prints the configuration that flags, environment or config
// file give, in the config-file format, the engine options included.
func configDump(args []string) int {
	f := newFlags("metastore config dump")
	if err := f.parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "metastore: %v\n", err)
		return exitUsage
	}
	out, err := f.dump()
	if err != nil {
		fmt.Fprintf(os.Stderr, "metastore: %v\n", err)
		return 1
	}
	os.Stdout.Write(out)
	return 0
}

// dump renders every flag's current value as a config file.
func (f *flags) dump() ([]byte, error) {
	doc := map[string]any{}
	f.fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "config-file" {
			return
		}
		s := fl.Value.String()
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			doc[fl.Name] = s == "true"
			return
		}
		if isDurationFlag(fl) {
			doc[fl.Name] = s // a Go duration, which loadConfigFile reads back
			return
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			doc[fl.Name] = n
			return
		}
		doc[fl.Name] = s
	})
	doc[engineOptionsKey] = f.cfg.Engine.String()
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	header := "# MetaStore configuration (metastore config dump). Keys are etcd's flag names.\n"
	return append([]byte(header), b...), nil
}

// transportSecurityKeys are etcd's config-file TLS blocks (embed.securityConfig),
// with the prefix of the flags their keys set:
//
//	client-transport-security:
//	  cert-file: /etc/metastore/m1.pem     # --cert-file
//	  key-file: /etc/metastore/m1-key.pem  # --key-file
//	  trusted-ca-file: /etc/metastore/ca.pem
//	  client-cert-auth: true
//	  auto-tls: false
//	peer-transport-security:               # the same keys, as --peer-*
//	  cert-file: ...
var transportSecurityKeys = map[string]string{
	"client-transport-security": "",
	"peer-transport-security":   "peer-",
}

// transportSecurityFlags maps a TLS block's keys to flag names without the
// prefix. Keys of etcd's block that MetaStore does not implement
// (client-cert-file, client-key-file, allowed-cn, allowed-hostname,
// skip-client-san-verification) are refused rather than ignored: ignoring
// them would serve with less checking than the file asks for.
var transportSecurityFlags = map[string]string{
	"cert-file":        "cert-file",
	"key-file":         "key-file",
	"trusted-ca-file":  "trusted-ca-file",
	"client-cert-auth": "client-cert-auth",
	"auto-tls":         "auto-tls",
}

// loadTransportSecurity sets the flags of one TLS block. A key also given
// at the top level of the file with another value is an error.
func (f *flags) loadTransportSecurity(path, block, prefix string, v any) []error {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return []error{fmt.Errorf("%s: %s must be a mapping of cert-file, key-file, trusted-ca-file, client-cert-auth, auto-tls", path, block)}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		name, ok := transportSecurityFlags[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s.%s is not supported by MetaStore (supported: cert-file, key-file, trusted-ca-file, client-cert-auth, auto-tls)", path, block, k))
			continue
		}
		if m[k] == nil {
			continue
		}
		name = prefix + name
		fl := f.fs.Lookup(name)
		val, err := yamlFlagValue(fl, m[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.%s: %w", path, block, k, err))
			continue
		}
		if top := fl.Value.String(); top != fl.DefValue && top != val {
			errs = append(errs, fmt.Errorf("%s: %s.%s %q conflicts with the top-level %s %q", path, block, k, val, name, top))
			continue
		}
		if err := f.fs.Set(name, val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.%s: %w", path, block, k, err))
		}
	}
	return errs
}
