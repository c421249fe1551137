package server

// TLS for the client and peer listeners, with etcd's flags:
//
//   - Client listeners whose URL is https:// (or unixs://) serve TLS. The TLS
//     listener wraps the raw one before cmux splits gRPC from HTTP, so both
//     are encrypted; tlsPeerCreds then hands the verified client certificate
//     to gRPC, where --client-cert-auth takes the user from its common name
//     (auth.AuthInfoFromTLS) when a request carries no token.
//   - Peer traffic uses TLS when --peer-cert-file/--peer-auto-tls is set;
//     peers then need https:// peer URLs (raftlog/transport Config.TLS).
//   - --auto-tls / --peer-auto-tls generate a self-signed certificate under
//     <data-dir>/fixtures/{client,peer} as etcd does; clients of such a
//     listener cannot verify it, so use it only on trusted networks.
//
// The member's own connections to its client listener (the Lock and Election
// services' client, lease forwarding to the leader, member fetches) present
// the member's client certificate; requests made with it never get an
// identity from it (tlsIdentity), only from a forwarded token.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/soheilhy/cmux"
)

// TLSInfo is one side's (client or peer) TLS configuration.
type TLSInfo struct {
	// CertFile and KeyFile are the listener's certificate and key
	// (--cert-file/--key-file, --peer-cert-file/--peer-key-file).
	CertFile, KeyFile string
	// TrustedCAFile verifies the other side's certificates
	// (--trusted-ca-file, --peer-trusted-ca-file).
	TrustedCAFile string
	// ClientCertAuth requires a certificate signed by TrustedCAFile from
	// every client (--client-cert-auth, --peer-client-cert-auth).
	ClientCertAuth bool
	// AutoTLS generates a self-signed certificate when CertFile is empty
	// (--auto-tls, --peer-auto-tls).
	AutoTLS bool
}

// Empty reports whether no TLS is configured.
func (i TLSInfo) Empty() bool { return i.CertFile == "" && i.KeyFile == "" && !i.AutoTLS }

// autoTLSValidity is how long a generated certificate is valid (etcd's
// --self-signed-cert-validity default: one year).
const autoTLSValidity = 365 * 24 * time.Hour

// tlsVersions are the values of --tls-min-version.
var tlsVersions = map[string]uint16{"TLS1.2": tls.VersionTLS12, "TLS1.3": tls.VersionTLS13}

// validateTLS adds every TLS configuration error to bad.
func (c *Config) validateTLS(bad func(string, ...any)) {
	for _, side := range []struct {
		flag string
		info TLSInfo
		urls []string
	}{{"--cert-file", c.ClientTLS, c.ListenClientURLs}, {"--peer-cert-file", c.PeerTLS, c.ListenPeerURLs}} {
		if (side.info.CertFile == "") != (side.info.KeyFile == "") {
			bad("%s and its key file must be given together", side.flag)
		}
		if side.info.ClientCertAuth && side.info.TrustedCAFile == "" {
			bad("%s: client certificate authentication needs a trusted CA file", side.flag)
		}
		for _, u := range side.urls {
			if isTLSURL(u) && side.info.Empty() {
				bad("%s is https but neither %s nor auto TLS is set", u, side.flag)
			}
		}
	}
	if _, ok := tlsVersions[c.TLSMinVersion]; !ok && c.TLSMinVersion != "" {
		bad("--tls-min-version %q must be TLS1.2 or TLS1.3", c.TLSMinVersion)
	}
	if len(c.CipherSuites) > 0 && c.TLSMinVersion == "TLS1.3" {
		bad("--cipher-suites cannot be set with --tls-min-version TLS1.3 (its suites are fixed)")
	}
	if _, err := cipherSuiteIDs(c.CipherSuites); err != nil {
		bad("--cipher-suites: %v", err)
	}
}

func isTLSURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "https" || p.Scheme == "unixs")
}

// cipherSuiteIDs maps IANA suite names (as etcd's --cipher-suites) to IDs.
// Only Go's secure suites are accepted.
func cipherSuiteIDs(names []string) ([]uint16, error) {
	known := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
	}
	var ids []uint16
	var errs []error
	for _, n := range names {
		id, ok := known[strings.TrimSpace(n)]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown or insecure cipher suite %q", n))
			continue
		}
		ids = append(ids, id)
	}
	return ids, errors.Join(errs...)
}

// tlsConfigs are the member's TLS configurations; nil fields mean cleartext.
type tlsConfigs struct {
	client     *tls.Config // the client listeners' server side
	clientDial *tls.Config // this member's own connections to client listeners
	peer       *tls.Config // the peer transport, both sides
	selfCert   []byte      // DER of the client certificate, never an identity
}

// setupTLS builds the TLS configurations from the config, generating
// certificates for auto TLS.
func (s *Server) setupTLS() error {
	cfg := s.cfg
	suites, _ := cipherSuiteIDs(cfg.CipherSuites) // validated
	minVersion := tlsVersions[cfg.TLSMinVersion]
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	if !cfg.ClientTLS.Empty() {
		srv, dial, err := buildTLS(cfg.ClientTLS, filepath.Join(cfg.DataDir, "fixtures", "client"), cfg.ListenClientURLs, suites, minVersion)
		if err != nil {
			return fmt.Errorf("server: client TLS: %w", err)
		}
		// gRPC clients offer only h2; HTTP clients get HTTP/1.1, which the
		// HTTP side of cmux serves on a decrypted connection.
		srv.NextProtos = []string{"http/1.1", "h2"}
		s.tlsc.client, s.tlsc.clientDial = srv, dial
		s.tlsc.selfCert = srv.Certificates[0].Certificate[0]
	}
	if !cfg.PeerTLS.Empty() {
		srv, dial, err := buildTLS(cfg.PeerTLS, filepath.Join(cfg.DataDir, "fixtures", "peer"), cfg.ListenPeerURLs, suites, minVersion)
		if err != nil {
			return fmt.Errorf("server: peer TLS: %w", err)
		}
		// One config for both roles (transport.Config.TLS).
		srv.RootCAs, srv.InsecureSkipVerify = dial.RootCAs, dial.InsecureSkipVerify
		s.tlsc.peer = srv
	}
	return nil
}

// buildTLS returns the server-side and dial-side configurations of info.
func buildTLS(info TLSInfo, autoDir string, urls []string, suites []uint16, minVersion uint16) (srv, dial *tls.Config, err error) {
	certFile, keyFile := info.CertFile, info.KeyFile
	if certFile == "" && info.AutoTLS {
		if certFile, keyFile, err = selfSignedCert(autoDir, urls); err != nil {
			return nil, nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	srv = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion, CipherSuites: suites}
	dial = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion, CipherSuites: suites}
	if info.TrustedCAFile != "" {
		pem, err := os.ReadFile(info.TrustedCAFile)
		if err != nil {
			return nil, nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("no certificate in %s", info.TrustedCAFile)
		}
		srv.ClientCAs, dial.RootCAs = pool, pool
		srv.ClientAuth = tls.VerifyClientCertIfGiven
		if info.ClientCertAuth {
			srv.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if info.AutoTLS {
		// A self-signed certificate verifies nothing; etcd skips it too.
		dial.InsecureSkipVerify = true
	}
	return srv, dial, nil
}

// selfSignedCert writes (once) a self-signed certificate for the hosts of
// urls into dir, as etcd's --auto-tls.
func selfSignedCert(dir string, urls []string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return "", "", err
	}
	tmpl := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"metastore"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(autoTLSValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(p.Hostname()); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if p.Hostname() != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, p.Hostname())
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// wrapClientListener returns ln serving TLS when its URL asks for it.
func (s *Server) wrapClientListener(rawURL string, ln net.Listener) net.Listener {
	if !isTLSURL(rawURL) {
		return ln
	}
	return tls.NewListener(ln, s.tlsc.client)
}

// selfDialTLS is the configuration of this member's connections to its own
// first client listener, nil when that one is cleartext. Like etcd's
// gateway, it does not verify the certificate: the address is our own
// socket, and a certificate issued for a host name would not match it.
func (s *Server) selfDialTLS() *tls.Config {
	if len(s.cfg.ListenClientURLs) == 0 || !isTLSURL(s.cfg.ListenClientURLs[0]) {
		return nil
	}
	c := s.tlsc.clientDial.Clone()
	c.InsecureSkipVerify = true
	return c
}

// tlsIdentity is the client certificate of ctx's connection when it may name
// a user: verified, and not this member's own.
func (s *Server) tlsIdentity(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return false
	}
	return !bytes.Equal(ti.State.PeerCertificates[0].Raw, s.tlsc.selfCert)
}

// tlsPeerCreds are the gRPC server's transport credentials when client
// listeners terminate TLS before cmux: the handshake is already done, so
// they only report the connection's TLS state to gRPC (peer.AuthInfo),
// where AuthInfoFromTLS finds the client certificate.
type tlsPeerCreds struct{}

func (tlsPeerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := c
	if mc, ok := conn.(*cmux.MuxConn); ok {
		conn = mc.Conn
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return c, plainAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil // a cleartext listener
	}
	if err := tc.Handshake(); err != nil { // done already when cmux read from it
		return nil, nil, err
	}
	return c, credentials.TLSInfo{State: tc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

// plainAuthInfo is the AuthInfo of a cleartext connection.
type plainAuthInfo struct{ credentials.CommonAuthInfo }

func (plainAuthInfo) AuthType() string { return "insecure" }

func (tlsPeerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("server: tlsPeerCreds is for the server side only")
}

func (tlsPeerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c tlsPeerCreds) Clone() credentials.TransportCredentials { return c }

func (tlsPeerCreds) OverrideServerName(string) error { return nil }
