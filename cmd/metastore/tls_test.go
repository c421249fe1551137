package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pki is a CA made at run time and the certificates it signed, as PEM files
// in a temporary directory. No key is committed to the repository.
type pki struct {
	t      *testing.T
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	serial int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "metastore test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	p.caFile = p.write("ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue makes a certificate for common name cn, valid for 127.0.0.1 as a
// server and as a client, and returns its certificate and key files.
func (p *pki) issue(cn string) (certFile, keyFile string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(cn+".pem", "CERTIFICATE", der), p.write(cn+"-key.pem", "EC PRIVATE KEY", kder)
}

// TestConfigFileTLSBlocks: etcd's client-transport-security and
// peer-transport-security config-file blocks set the TLS flags; keys
// MetaStore does not implement and conflicts with top-level keys are
// errors, all reported at once.
func TestConfigFileTLSBlocks(t *testing.T) {
	p := newPKI(t)
	cert, key := p.issue("m1")
	path := writeFile(t, "tls.yaml", fmt.Sprintf(`name: m1
data-dir: %s
listen-client-urls: https://127.0.0.1:2379
advertise-client-urls: https://127.0.0.1:2379
listen-peer-urls: https://127.0.0.1:2380
initial-advertise-peer-urls: https://127.0.0.1:2380
client-transport-security:
  cert-file: %[2]s
  key-file: %[3]s
  trusted-ca-file: %[4]s
  client-cert-auth: true
peer-transport-security:
  cert-file: %[2]s
  key-file: %[3]s
  trusted-ca-file: %[4]s
  client-cert-auth: true
  auto-tls: false
`, t.TempDir(), cert, key, p.caFile))
	f, err := parseFlags(t, "--config-file", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tls := range []struct {
		name                   string
		cert, key, ca          string
		clientCertAuth, autoTL bool
	}{
		{"client", f.cfg.ClientTLS.CertFile, f.cfg.ClientTLS.KeyFile, f.cfg.ClientTLS.TrustedCAFile, f.cfg.ClientTLS.ClientCertAuth, f.cfg.ClientTLS.AutoTLS},
		{"peer", f.cfg.PeerTLS.CertFile, f.cfg.PeerTLS.KeyFile, f.cfg.PeerTLS.TrustedCAFile, f.cfg.PeerTLS.ClientCertAuth, f.cfg.PeerTLS.AutoTLS},
	} {
		if tls.cert != cert || tls.key != key || tls.ca != p.caFile || !tls.clientCertAuth || tls.autoTL {
			t.Errorf("%s TLS from the config file: %+v", tls.name, tls)
		}
	}

	bad := writeFile(t, "bad.yaml", fmt.Sprintf(`name: m1
data-dir: %s
trusted-ca-file: /somewhere/else.pem
client-transport-security:
  cert-file: %s
  allowed-cn: etcd-client
  trusted-ca-file: %s
peer-transport-security: not a mapping
`, t.TempDir(), cert, p.caFile))
	_, err = parseFlags(t, "--config-file", bad)
	for _, want := range []string{
		"client-transport-security.allowed-cn is not supported",
		`client-transport-security.trusted-ca-file "` + p.caFile + `" conflicts with the top-level trusted-ca-file "/somewhere/else.pem"`,
		"peer-transport-security must be a mapping",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad TLS blocks: error %v, want it to contain %q", err, want)
		}
	}
}

// TestEtcdctlOverTLS starts a member from a config file with TLS blocks
// (client and peer), then drives etcdctl's user, role and auth groups over
// TLS, identifying users by client certificate (--cert) and by --user, and
// the operator's tools with their TLS flags.
func TestEtcdctlOverTLS(t *testing.T) {
	binaries(t)
	p := newPKI(t)
	mCert, mKey := p.issue("m1")
	rootCert, rootKey := p.issue("root")
	aliceCert, aliceKey := p.issue("alice")
	ports := freePorts(t, 2)
	m := &member{t: t, name: "m1", dataDir: filepath.Join(t.TempDir(), "m1"),
		clientURL: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), peerURL: fmt.Sprintf("https://127.0.0.1:%d", ports[1]), clusterSt: "new"}
	m.initialCl = "m1=" + m.peerURL
	cfgFile := writeFile(t, "m1.yaml", fmt.Sprintf(`name: m1
data-dir: %s
listen-client-urls: %s
advertise-client-urls: %[2]s
listen-peer-urls: %s
initial-advertise-peer-urls: %[3]s
initial-cluster: m1=%[3]s
log-level: warn
bcrypt-cost: 4
client-transport-security:
  cert-file: %s
  key-file: %s
  trusted-ca-file: %s
  client-cert-auth: true
peer-transport-security:
  cert-file: %[4]s
  key-file: %[5]s
  trusted-ca-file: %[6]s
  client-cert-auth: true
`, m.dataDir, m.clientURL, m.peerURL, mCert, mKey, p.caFile))
	m.extraArgs = []string{"--config-file", cfgFile} // the file replaces the other flags
	m.start()
	t.Cleanup(func() {
		m.kill(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("log of m1:\n%s", m.log.String())
		}
	})
	ep := []string{m.clientURL}
	as := func(cert, key string) []string {
		return []string{"--cacert", p.caFile, "--cert", cert, "--key", key}
	}
	root := as(rootCert, rootKey)
	alice := as(aliceCert, aliceKey)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := etcdctl(t, ep, "", append(root, "get", "probe")...); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member not ready over TLS after 30s:\n%s", m.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	run := func(args ...string) string { t.Helper(); return mustEtcdctl(t, ep, "", args...) }
	fail := func(want string, args ...string) {
		t.Helper()
		out, err := etcdctl(t, ep, "", args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("etcdctl %s: %v %q, want an error containing %q", strings.Join(args, " "), err, out, want)
		}
	}
	run(append(root, "user", "add", "root:rootpw")...)
	run(append(root, "user", "grant-role", "root", "root")...)
	run(append(root, "user", "add", "alice:alicepw")...)
	run(append(root, "role", "add", "app")...)
	run(append(root, "role", "grant-permission", "app", "readwrite", "app/", "--prefix")...)
	run(append(root, "user", "grant-role", "alice", "app")...)
	if out := run(append(root, "auth", "enable")...); !strings.Contains(out, "Authentication Enabled") {
		t.Fatalf("auth enable: %q", out)
	}
	// The certificate's common name is the user.
	run(append(alice, "put", "app/x", "1")...)
	fail("permission denied", append(alice, "put", "other", "1")...)
	fail("permission denied", append(alice, "user", "list")...)
	if out := run(append(root, "user", "list")...); out != "alice\nroot\n" {
		t.Fatalf("root by certificate: user list %q", out)
	}
	// A token wins over the certificate, as etcd.
	run(append(alice, "--user", "root:rootpw", "put", "other", "1")...)
	fail("authentication failed", append(root, "--user", "alice:wrong", "get", "app/x")...)
	// The member's own certificate names nobody.
	fail("user name is empty", append(as(mCert, mKey), "get", "app/x")...)
	// No client certificate: the TLS handshake is refused.
	if out, err := etcdctl(t, ep, "", "--cacert", p.caFile, "--dial-timeout", "2s", "get", "app/x"); err == nil {
		t.Fatalf("a client without a certificate was served: %q", out)
	}

	// The operator's tools over TLS, as root by certificate.
	stdout, stderr, err := runTool(t, "status", "--endpoints", m.clientURL, "--cacert", p.caFile, "--cert", rootCert, "--key", rootKey)
	if err != nil || !strings.Contains(stdout, m.clientURL) {
		t.Fatalf("status over TLS: %v\n%s%s", err, stdout, stderr)
	}
	snap := filepath.Join(t.TempDir(), "tls.snap")
	if _, stderr, err := runTool(t, "snapshot", "save", "--endpoints", m.clientURL, "--cacert", p.caFile, "--cert", aliceCert, "--key", aliceKey, snap); err == nil || !strings.Contains(stderr, "permission denied") {
		t.Fatalf("snapshot save as alice: %v %q, want permission denied", err, stderr)
	}
	if _, stderr, err := runTool(t, "snapshot", "save", "--endpoints", m.clientURL, "--cacert", p.caFile, "--cert", aliceCert, "--key", aliceKey, "--user", "root:rootpw", snap); err != nil {
		t.Fatalf("snapshot save as root by --user: %v %q", err, stderr)
	}
}
