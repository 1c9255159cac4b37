package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// TestScanOverTLSWithCredentials: a scan whose coordinator and workers
// reach the server over tls:// (its certificate checked against -nats-ca)
// and log in with a credentials file (a user JWT of an account with
// JetStream, and its NKey seed: the server trusts the operator that signed
// the account) completes with every domain and target once. Without the
// CA, or without the credentials, the coordinator fails with ErrNATS
// before touching the output directory.
func TestScanOverTLSWithCredentials(t *testing.T) {
	dir := t.TempDir()
	caFile, serverTLS := testCA(t, dir)
	creds, operator, resolver, sysAccount := testCreds(t, dir)
	url := startNATS(t, func(o *server.Options) {
		o.TLSConfig, o.TLS = serverTLS, true
		o.TrustedOperators, o.AccountResolver, o.SystemAccount = []*jwt.OperatorClaims{operator}, resolver, sysAccount
	})
	url = strings.Replace(url, "nats://", "tls://", 1)
	secure := NATS{URL: url, Creds: creds, CA: caFile}

	l := startLab(t, 100)
	for _, tt := range []struct {
		name string
		n    NATS
		want string
	}{
		{"no CA", NATS{URL: url, Creds: creds}, "certificate signed by unknown authority"},
		{"no credentials", NATS{URL: url, CA: caFile}, "Authorization Violation"},
	} {
		name := tt.name
		out := outDir(t, strings.ReplaceAll(name, " ", "-"))
		_, err := coordinate(context.Background(), url, l.scanConfig(out), func(c *CoordinatorConfig) { c.NATS = tt.n })
		if msg := isErr(err, ErrNATS); msg != "" || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v: want ErrNATS saying %q", name, err, tt.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: the output directory was made", name)
		}
	}

	startWorkers(t, url, 1, l.lab.DNSAddr, func(_ int, c *WorkerConfig) { c.NATS = secure })
	out := outDir(t, "scan")
	cfg := l.scanConfig(out)
	res, err := coordinate(context.Background(), url, cfg, func(c *CoordinatorConfig) { c.NATS = secure })
	mustComplete(t, res, err)
	if len(res.Manifest.Workers) != 1 {
		t.Errorf("workers in the manifest: %+v", res.Manifest.Workers)
	}
	checkOnce(t, cfg.Input, out)
}

// testCA writes a CA's certificate to dir and returns its path and a
// server configuration with a certificate it issued for 127.0.0.1.
func testCA(t *testing.T, dir string) (caFile string, cfg *tls.Config) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test NATS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
}

// testCreds makes an operator, a system account and an account with
// JetStream, and writes the credentials file of a user of that account to
// dir: what the server trusts, and the file -nats-creds takes.
func testCreds(t *testing.T, dir string) (creds string, operator *jwt.OperatorClaims, resolver *server.MemAccResolver, sysAccount string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	operator = jwt.NewOperatorClaims(opub)
	resolver = &server.MemAccResolver{}
	account := func(js bool) (nkeys.KeyPair, string) {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(apub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := ac.Encode(okp)
		must(err)
		must(resolver.Store(apub, token))
		return akp, apub
	}
	_, sysAccount = account(false)
	akp, _ := account(true)
	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	userJWT, err := jwt.NewUserClaims(upub).Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	file, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	creds = filepath.Join(dir, "user.creds")
	must(os.WriteFile(creds, file, 0o600))
	return creds, operator, resolver, sysAccount
}
