// Package testpki makes certificates for the analyzer's tests, so that every
// certificate case (trusted, self-signed, expired, wildcard, CN-only, ...) is
// built from a few lines of intent instead of checked-in PEM files whose
// meaning nobody remembers.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync/atomic"
	"time"
)

// Cert is a certificate with its key, so it can sign others.
type Cert struct {
	Cert *x509.Certificate
	DER  []byte
	Key  crypto.Signer
}

// Spec describes a certificate to make; zero fields get test defaults.
type Spec struct {
	CN        string
	Org       string
	DNSNames  []string
	NotBefore time.Time
	NotAfter  time.Time
	IsCA      bool
	RSABits   int // an RSA key of this size instead of ECDSA P-256
	// Edit changes the template last, for what the fields above do not
	// say (name constraints, path length, policies, ...).
	Edit func(*x509.Certificate)
}

var serial atomic.Int64

// Make creates a certificate signed by parent, or self-signed when parent is
// nil. It panics on failure: only tests call it, with fixed inputs.
func Make(s Spec, parent *Cert) *Cert {
	var key crypto.Signer
	var err error
	if s.RSABits > 0 {
		key, err = rsa.GenerateKey(rand.Reader, s.RSABits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		panic(err)
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: s.CN},
		DNSNames:              s.DNSNames,
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		BasicConstraintsValid: true,
		IsCA:                  s.IsCA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if s.Org != "" {
		tmpl.Subject.Organization = []string{s.Org}
	}
	if s.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	if s.Edit != nil {
		s.Edit(tmpl)
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &Cert{Cert: cert, DER: der, Key: key}
}

// Pool returns a pool holding certs.
func Pool(certs ...*Cert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Cert)
	}
	return p
}

// Chain returns the DER chain as a server would send it.
func Chain(certs ...*Cert) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.DER
	}
	return out
}
