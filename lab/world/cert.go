package world

import (
	"strconv"
	"strings"
	"time"
)

// CertRule is how a case's certificate departs from the ordinary one (a
// certificate for the MX name the client asked for, from the lab
// intermediate, P-256, valid now). Server.CertSpec applies it to a server
// and an SNI; lab/pki makes what the spec says.
type CertRule struct {
	Names    CertNames
	Fixed    string // CertFixed: the one name; "<zone>" stands for the server's zone
	NoSAN    bool   // the names go in the CN only, without a SAN extension
	Issuer   Issuer
	Key      Key
	Validity Validity
	Pad      int // unrelated CA certificates appended to the chain
	Broken   Broken
	Sig      Sig
}

// CertNames says which names a certificate carries.
type CertNames uint8

const (
	CertMX          CertNames = iota // the MX name of the SNI, if the server serves it, else its first
	CertBanner                       // the banner name only
	CertMXAndBanner                  // CN the MX name; SANs the MX name and the banner name
	CertAllMX                        // CN the first MX name; SANs every MX name the server serves
	CertListed                       // CN the banner; SANs the banner and every MX name of the provider (StyleSuite)
	CertAutoSSL                      // per hosted domain by SNI: mail.<d> and <d>; else the server's own name
	CertWildcard                     // *.<zone>: covers the site's names one label under the zone
	CertFixed                        // CertRule.Fixed; a "*" in it is one the lab knows to match nothing
)

// zonePlaceholder stands for the server's zone in CertRule.Fixed.
const zonePlaceholder = "<zone>"

// Issuer is who signs a certificate.
type Issuer uint8

const (
	IssuerLab        Issuer = iota // the lab intermediate, sent in the chain
	IssuerLabNoChain               // the lab intermediate, not sent
	IssuerUnknown                  // a CA outside ca.pem
	IssuerSelf                     // its own key
)

// Key is a certificate's key.
type Key uint8

const (
	KeyP256 Key = iota
	KeyP384
	KeyRSA2048
	KeyDSA // DSABits; served over TLS 1.2 with another key, since no TLS stack signs with DSA
)

// DSABits is the size of the lab's DSA key (P's bit length), as old mail
// servers had them.
const DSABits = 1024

// KeyFacts are a key's cert_key_type and cert_key_bits as the dataset
// spells them (docs/schema.md).
func (k Key) KeyFacts() (string, int32) {
	switch k {
	case KeyP384:
		return "ECDSA", 384
	case KeyRSA2048:
		return "RSA", 2048
	case KeyDSA:
		return "DSA", DSABits
	}
	return "ECDSA", 256
}

// Sig is a certificate's signature algorithm.
type Sig uint8

const (
	SigDefault Sig = iota // what crypto/x509 picks for the issuer's key: ECDSA with SHA-256 (SHA-384 for P-384), SHA-256 with RSA
	SigMD5                // md5WithRSAEncryption (RSA issuers only), which crypto/x509 neither writes nor checks
)

// Validity is a certificate's validity period.
type Validity uint8

const (
	ValidNow Validity = iota
	ValidExpired
	ValidFuture
)

// Fixed validity dates keep the world reproducible; a scan between 2024 and
// 2089 sees the intended facts.
var (
	validFrom   = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	validUntil  = time.Date(2089, 1, 1, 0, 0, 0, 0, time.UTC)
	expiredFrom = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	expiredTo   = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	futureFrom  = time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC)
	futureTo    = time.Date(2091, 1, 1, 0, 0, 0, 0, time.UTC)
	caFrom      = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	caTo        = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// CAValidity is the validity of the lab's CAs.
func CAValidity() (notBefore, notAfter time.Time) { return caFrom, caTo }

// Dates are the certificate's notBefore and notAfter.
func (v Validity) Dates() (notBefore, notAfter time.Time) {
	switch v {
	case ValidExpired:
		return expiredFrom, expiredTo
	case ValidFuture:
		return futureFrom, futureTo
	}
	return validFrom, validUntil
}

// Broken is a chain crypto/x509 cannot parse (the cert_parse_* cases).
type Broken uint8

const (
	BrokenNone         Broken = iota
	BrokenLeaf                // the leaf's version field says 6: "x509: invalid version"
	BrokenIntermediate        // the second certificate sent is a DER SEQUENCE that is no certificate
)

// CertSpec is one certificate exactly: lab/pki makes it, byte for byte the
// same each time.
type CertSpec struct {
	CN       string
	SANs     []string // nil: no SAN extension at all
	Issuer   Issuer
	Key      Key
	Validity Validity
	Pad      int
	Broken   Broken
	Sig      Sig
}

// ID names a spec: equal IDs, equal certificates. The lab's PKI derives the
// serial number and the key from it, so its format is part of every world.
func (s CertSpec) ID() string {
	// cn|sans|issuer|key|validity|nosan|pad|broken
	b := make([]byte, 0, 64+len(s.CN)*(1+len(s.SANs)))
	b = append(append(b, s.CN...), '|')
	for i, n := range s.SANs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, n...)
	}
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.Issuer), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.Key), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.Validity), 10)
	b = append(b, '|')
	b = strconv.AppendBool(b, s.SANs == nil)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.Pad), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.Broken), 10)
	if s.Sig != SigDefault { // added after the other fields: the IDs without it stay those of earlier worlds
		b = append(b, '|')
		b = strconv.AppendUint(b, uint64(s.Sig), 10)
	}
	return string(b)
}

// CertRule is the rule of the server's certificate: its style's, else its
// case's.
func (s *Server) CertRule() *CertRule {
	if r := styles[s.Style].cert; r != nil {
		return r
	}
	return &s.Case.Cert
}

// CertSpec is the certificate the server presents to a client that sent
// sni (lowercased, without the trailing dot).
func (s *Server) CertSpec(sni string) CertSpec {
	r := s.CertRule()
	name := s.certName(sni)
	sp := CertSpec{CN: name, SANs: []string{name}, Issuer: r.Issuer, Key: r.Key, Validity: r.Validity, Pad: r.Pad, Broken: r.Broken, Sig: r.Sig}
	switch r.Names {
	case CertBanner:
		sp.CN, sp.SANs = s.Banner, []string{s.Banner}
	case CertMXAndBanner:
		sp.SANs = []string{name, s.Banner}
	case CertAllMX:
		sp.CN, sp.SANs = s.Names[0], s.Names
	case CertListed:
		sp.CN, sp.SANs = s.Banner, s.san
	case CertAutoSSL:
		// Per-domain certificates by SNI; without a hosted domain's name the
		// server's own.
		sp.CN, sp.SANs = s.Banner, []string{s.Banner}
		if d, ok := s.autoSSLDomain(sni); ok {
			sp.CN, sp.SANs = sni, []string{sni, d}
		}
	case CertWildcard:
		n := "*." + s.Zone
		sp.CN, sp.SANs = n, []string{n}
	case CertFixed:
		n := strings.ReplaceAll(r.Fixed, zonePlaceholder, s.Zone)
		sp.CN, sp.SANs = n, []string{n}
	}
	if r.NoSAN {
		sp.SANs = nil
	}
	return sp
}
