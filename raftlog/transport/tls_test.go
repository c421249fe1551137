package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// testTLS returns a config that serves and trusts a self-signed certificate
// for 127.0.0.1, usable as both server and client (mutual TLS).
func testTLS(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "metastore-peer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// Messages and snapshots cross mutual TLS; a plain-HTTP member cannot dial
// in.
func TestTLS(t *testing.T) {
	tlsCfg := testTLS(t)
	cfg1, cfg2 := testConfig(t, 1, 7), testConfig(t, 2, 7)
	cfg1.TLS, cfg2.TLS = tlsCfg, tlsCfg
	a := newMember(t, cfg1, "", true)
	b := newMember(t, cfg2, "", true)
	a.src.dir = filepath.Join(t.TempDir(), "checkpoint")
	writeTree(t, a.src.dir, map[string]int{"a.sst": 3 << 20, "b.sst": 10})
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 100))
	waitFor(t, waitTimeout, "delivery over TLS", func() bool { return len(b.raft.from(1)) == 100 })
	checkInOrder(t, b.raft.from(1), 100)
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 2, 9)})
	if got := waitSnapshotStatus(t, a.raft, 2, 1); got[0] != raft.SnapshotFinish {
		t.Fatalf("ReportSnapshot %v", got)
	}
	sameTree(t, a.src.dir, filepath.Join(b.cfg.SnapshotDir, "2-9"))

	plain := newMember(t, testConfig(t, 3, 7), "", true)
	b.tr.AddPeer(3, []string{plain.url})
	plain.tr.AddPeer(2, []string{"http://" + b.addr})
	plain.tr.Send(heartbeats(3, 2, 1))
	waitFor(t, waitTimeout, "plain dial to fail", func() bool { return plain.tr.Stats()[2].LastError != nil })
	if got := b.raft.from(3); len(got) != 0 {
		t.Fatalf("plain-text member delivered %d messages to a TLS member", len(got))
	}
}
