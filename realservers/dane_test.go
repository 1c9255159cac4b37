package realservers

// DANE (RFC 7672) in the lab: zones signed with ldns-keygen and
// ldns-signzone and served by the lab's NSD, one of them broken on purpose,
// one unsigned; TLSA records made by ldns-dane from the certificates the
// lab's Postfix and Exim send; Unbound validating them with the zones' own
// keys as trust anchors. The truth of every case is stated here, from this
// configuration; dig and delv (policies_test.go) check that the DNS says
// what the configuration means, and posttls-finger gives a DANE sender's
// verdict per MX host.

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The DANE zones and the listener added for them.
const (
	signedZone   = "dane.test"     // signed (ECDSA P-256 KSK and ZSK, NSEC3 with no iterations or salt)
	bogusZone    = "bogus.test"    // signed (NSEC), then two signatures broken
	insecureZone = "insecure.test" // unsigned, no chain of trust
	// daneTAIP is one more listener of the lab's Postfix, sending a leaf
	// for mx.ta201.dane.test issued by an intermediate of the test CA, and
	// that intermediate.
	daneTAIP  = "127.77.0.29"
	daneTAKey = "postfix-dane-ta"
	// The intermediate CA the DANE-TA(2) record names, and the key the
	// self-signed Exim certificate had before a rollover.
	intermediateKey = "dane-intermediate"
	oldEximKey      = "exim-selfsigned-old"
	// policyResolverIP is where Unbound listens for the policies harness,
	// on port 53: posttls-finger asks the system resolver, whose
	// resolv.conf cannot name another port.
	policyResolverIP = unboundIP
)

// tlsaSpec is one TLSA record as published: RFC 6698's three fields and the
// certificate (a name in lab.certs) whose data it carries.
type tlsaSpec struct {
	Usage, Selector, MType int
	Cert                   string
}

// zoneBreak is how a case's RRset is made bogus after signing.
type zoneBreak string

const (
	breakNone         zoneBreak = ""
	breakTLSASig      zoneBreak = "tampered TLSA signature" // one byte of the RRSIG over the TLSA RRset changed
	breakMXSigExpired zoneBreak = "expired MX signature"    // the RRSIG over the MX RRset expired last month
)

// daneCase is one domain with one MX host, and the truth about it.
type daneCase struct {
	Key    string // sub-test name
	Domain string
	MX     string
	// CNAME, when set, makes the MX host an alias of this name, which has the
	// address and the TLSA records (RFC 7672 §2.2.2: the expanded name's
	// TLSA RRset is used when the chain is secure).
	CNAME  string
	IP     string
	Server string // what listens at IP (a spec key, or daneTAKey), for messages
	TLSA   []tlsaSpec
	Break  zoneBreak

	// The truth, from the zones as configured.
	MXDNSSEC   string // the MX RRset's DNSSEC status: secure, insecure, bogus
	AddrDNSSEC string // the MX host's A RRset's (through the CNAME)
	TLSAStatus string // ok, nxdomain (no such name), servfail (bogus)
	TLSADNSSEC string
	// Usable: the TLSA RRset is secure and has a record a DANE SMTP client
	// uses (usage 2 or 3, RFC 7672 §3.1); Valid: the chain the server
	// sends satisfies one of them (DANE-EE: the leaf matches, names and
	// dates ignored; DANE-TA: a certificate of the chain matches, the leaf
	// chains to it and names the TLSA base domain).
	Usable, Valid bool
}

// tlsaBase is the name whose TLSA RRset a DANE client uses.
func (c daneCase) tlsaBase() string {
	if c.CNAME != "" {
		return c.CNAME
	}
	return c.MX
}

// tlsaOwner is the TLSA owner name for SMTP on port 25 (RFC 7672 §2.2).
func tlsaOwner(host string) string { return "_25._tcp." + host }

// daneCases is the DANE harness. The servers are the lab's: 127.77.0.25
// (Postfix, leaf mx1.real.test from the test CA, sent with the CA), .26
// (Exim, self-signed ECDSA mx2.real.test), .27 (Postfix, snakeoil
// "localhost"), and .29 (Postfix, leaf mx.ta201.dane.test from an
// intermediate, sent with the intermediate).
func daneCases() []daneCase {
	sec := func(c daneCase) daneCase {
		if c.MXDNSSEC == "" {
			c.MXDNSSEC, c.AddrDNSSEC = "secure", "secure"
		}
		if c.TLSAStatus == "" {
			c.TLSAStatus, c.TLSADNSSEC = "ok", "secure"
		}
		return c
	}
	return []daneCase{
		sec(daneCase{Key: "ee-311", Domain: "ee311." + signedZone, MX: "mx.ee311." + signedZone, IP: "127.77.0.26", Server: "exim-selfsigned",
			TLSA: []tlsaSpec{{3, 1, 1, "exim-selfsigned"}}, Usable: true, Valid: true}),
		sec(daneCase{Key: "ee-301", Domain: "ee301." + signedZone, MX: "mx.ee301." + signedZone, IP: "127.77.0.27", Server: "postfix-snakeoil",
			TLSA: []tlsaSpec{{3, 0, 1, "postfix-snakeoil"}}, Usable: true, Valid: true}),
		sec(daneCase{Key: "ta-201-intermediate", Domain: "ta201." + signedZone, MX: "mx.ta201." + signedZone, IP: daneTAIP, Server: daneTAKey,
			TLSA: []tlsaSpec{{2, 0, 1, intermediateKey}}, Usable: true, Valid: true}),
		// The CA is sent and matches, but the leaf names mx1.real.test.
		sec(daneCase{Key: "ta-201-wrong-name", Domain: "ta201-name." + signedZone, MX: "mx.ta201-name." + signedZone, IP: "127.77.0.25", Server: "postfix-ca",
			TLSA: []tlsaSpec{{2, 0, 1, testCA}}, Usable: true, Valid: false}),
		// Only the key the server had before a rollover is published.
		sec(daneCase{Key: "ee-311-stale", Domain: "stale." + signedZone, MX: "mx.stale." + signedZone, IP: "127.77.0.26", Server: "exim-selfsigned",
			TLSA: []tlsaSpec{{3, 1, 1, oldEximKey}}, Usable: true, Valid: false}),
		// During the rollover: the old key and the new one.
		sec(daneCase{Key: "ee-311-rollover", Domain: "rollover." + signedZone, MX: "mx.rollover." + signedZone, IP: "127.77.0.26", Server: "exim-selfsigned",
			TLSA: []tlsaSpec{{3, 1, 1, oldEximKey}, {3, 1, 1, "exim-selfsigned"}}, Usable: true, Valid: true}),
		// PKIX-EE(1) is not for SMTP (RFC 7672 §3.1.3): present, secure, unusable.
		sec(daneCase{Key: "pkix-ee-unusable", Domain: "pkix." + signedZone, MX: "mx.pkix." + signedZone, IP: "127.77.0.25", Server: "postfix-ca",
			TLSA: []tlsaSpec{{1, 1, 1, "postfix-ca"}}, Usable: false, Valid: false}),
		// A signed zone, no TLSA record: a secure denial (NSEC3) that the
		// name exists, as for most hosts.
		sec(daneCase{Key: "no-tlsa", Domain: "notlsa." + signedZone, MX: "mx.notlsa." + signedZone, IP: "127.77.0.25", Server: "postfix-ca",
			TLSAStatus: "nxdomain", TLSADNSSEC: "secure"}),
		// The MX host is an alias of mx.ee311's: the TLSA RRset of the
		// expanded name is the one used.
		sec(daneCase{Key: "cname-expanded", Domain: "cname." + signedZone, MX: "mx.cname." + signedZone, CNAME: "mx.ee311." + signedZone,
			IP: "127.77.0.26", Server: "exim-selfsigned", Usable: true, Valid: true}),
		// A matching record whose signature was tampered with: bogus.
		{Key: "tlsa-bogus", Domain: "tlsa." + bogusZone, MX: "mx.tlsa." + bogusZone, IP: "127.77.0.26", Server: "exim-selfsigned",
			TLSA: []tlsaSpec{{3, 1, 1, "exim-selfsigned"}}, Break: breakTLSASig,
			MXDNSSEC: "secure", AddrDNSSEC: "secure", TLSAStatus: "servfail", TLSADNSSEC: "bogus"},
		// The MX RRset's signature expired: the domain's MX lookup is bogus;
		// the host itself is secure and has no TLSA RRset.
		{Key: "mx-bogus", Domain: "expired." + bogusZone, MX: "mx.expired." + bogusZone, IP: "127.77.0.25", Server: "postfix-ca",
			Break:    breakMXSigExpired,
			MXDNSSEC: "bogus", AddrDNSSEC: "secure", TLSAStatus: "nxdomain", TLSADNSSEC: "secure"},
		// A matching record in an unsigned zone: present, not secure.
		{Key: "tlsa-insecure", Domain: insecureZone, MX: "mx." + insecureZone, IP: "127.77.0.26", Server: "exim-selfsigned",
			TLSA:     []tlsaSpec{{3, 1, 1, "exim-selfsigned"}},
			MXDNSSEC: "insecure", AddrDNSSEC: "insecure", TLSAStatus: "ok", TLSADNSSEC: "insecure"},
	}
}

// makeDANECerts makes the certificates only the DANE harness uses: an
// intermediate CA under the test CA, the leaf it issues for the DANE-TA
// listener (sent with the intermediate), and the key Exim's self-signed
// certificate had before a rollover (a certificate for the same name).
func (l *lab) makeDANECerts(ctx context.Context, t *testing.T) {
	t.Helper()
	p256 := l.p256(ctx, t)
	l.issue(ctx, t, certRequest{key: intermediateKey, cn: "mxsurvey realservers DANE intermediate", keyspec: p256, issuer: testCA, ca: true})
	l.issue(ctx, t, certRequest{key: daneTAKey, cn: "mx.ta201." + signedZone, keyspec: p256, issuer: intermediateKey})
	l.chainFile(t, daneTAKey+"-chain", daneTAKey, intermediateKey)
	l.selfSigned(ctx, t, oldEximKey, "mx2.real.test", "30", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
}

// zoneSpec is one zone NSD serves.
type zoneSpec struct {
	name    string
	records []string // presentation form, absolute names
	nsec3   bool     // when signed: NSEC3 (else NSEC)
	signed  bool
	breaks  []zoneBreakAt
}

type zoneBreakAt struct {
	owner, rrtype string // the RRset whose RRSIG is broken
	how           zoneBreak
}

// zoneHeader is the SOA and NS of a test zone; ns.real.test is NSD.
func zoneHeader(name string) []string {
	return []string{
		fmt.Sprintf("%s. 300 IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300", name, zoneName, zoneName),
		fmt.Sprintf("%s. 300 IN NS ns.%s.", name, zoneName),
	}
}

// daneZones builds the three DANE zones from the cases, with TLSA records
// made by ldns-dane from the certificate files (kept in l.tlsa).
func (l *lab) daneZones(ctx context.Context, t *testing.T) []zoneSpec {
	t.Helper()
	zones := map[string]*zoneSpec{
		signedZone:   {name: signedZone, signed: true, nsec3: true, records: zoneHeader(signedZone)},
		bogusZone:    {name: bogusZone, signed: true, records: zoneHeader(bogusZone)},
		insecureZone: {name: insecureZone, records: zoneHeader(insecureZone)},
	}
	for _, c := range l.dane {
		z := zones[zoneOf(c.Domain)]
		if z == nil {
			t.Fatalf("realservers: DANE case %s: %s is in no zone of the harness", c.Key, c.Domain)
		}
		z.records = append(z.records, fmt.Sprintf("%s. 300 IN MX 10 %s.", c.Domain, c.MX))
		if c.CNAME != "" {
			z.records = append(z.records, fmt.Sprintf("%s. 300 IN CNAME %s.", c.MX, c.CNAME))
			continue // the target's case has its address and TLSA records
		}
		z.records = append(z.records, fmt.Sprintf("%s. 300 IN A %s", c.MX, c.IP))
		for _, r := range c.TLSA {
			data := l.tlsaRecord(ctx, t, c.MX, r)
			z.records = append(z.records, fmt.Sprintf("%s. 300 IN TLSA %s", tlsaOwner(c.MX), data))
			l.tlsa[tlsaOwner(c.MX)] = append(l.tlsa[tlsaOwner(c.MX)], data)
		}
		switch c.Break {
		case breakTLSASig:
			z.breaks = append(z.breaks, zoneBreakAt{tlsaOwner(c.MX), "TLSA", c.Break})
		case breakMXSigExpired:
			z.breaks = append(z.breaks, zoneBreakAt{c.Domain, "MX", c.Break})
		}
	}
	return []zoneSpec{*zones[signedZone], *zones[bogusZone], *zones[insecureZone]}
}

// zoneOf is the harness zone a name is in.
func zoneOf(name string) string {
	for _, z := range []string{signedZone, bogusZone, insecureZone, stsZone} {
		if name == z || strings.HasSuffix(name, "."+z) {
			return z
		}
	}
	return ""
}

// tlsaRecord makes the record's data ("3 1 1 <hex>") with ldns-dane from
// the certificate file, and checks it against the hash computed here from
// the certificate's DER: two implementations agreeing on what the record
// must hold.
func (l *lab) tlsaRecord(ctx context.Context, t *testing.T, host string, r tlsaSpec) string {
	t.Helper()
	pemFile := l.certs[r.Cert]
	args := []string{"-n", "-c", pemFile}
	switch r.Usage {
	case 2:
		// A trust anchor record: ldns-dane builds the validation path to a
		// self-signed root (the test CA) and -o 0 selects the file's own
		// certificate in it.
		args = append(args, "-f", l.caFile, "-o", "0")
	case 0, 1:
		args = append(args, "-f", l.caFile) // PKIX usages: validated first
	}
	out, err := run(ctx, "", l.tools.ldnsDane, append(args, "create", host, "25",
		strconv.Itoa(r.Usage), strconv.Itoa(r.Selector), strconv.Itoa(r.MType))...)
	if err != nil {
		t.Fatalf("realservers: ldns-dane: %v", err)
	}
	f := strings.Fields(out)
	i := slices.Index(f, "TLSA")
	if i < 0 || len(f) != i+5 {
		t.Fatalf("realservers: ldns-dane printed %q, want one TLSA record", out)
	}
	data := strings.Join(f[i+1:], " ")

	ders, err := certDER(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(ders[0])
	if err != nil {
		t.Fatal(err)
	}
	sel := cert.Raw
	if r.Selector == 1 {
		sel = cert.RawSubjectPublicKeyInfo
	}
	var sum []byte
	switch r.MType {
	case 0:
		sum = sel
	case 1:
		s := sha256.Sum256(sel)
		sum = s[:]
	case 2:
		s := sha512.Sum512(sel)
		sum = s[:]
	}
	if want := fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MType, hex.EncodeToString(sum)); !strings.EqualFold(data, want) {
		t.Fatalf("realservers: ldns-dane made %q for %s, the certificate's own hash gives %q", data, r.Cert, want)
	}
	return strings.ToLower(data)
}

// signZone writes a zone's file for NSD: signed with a new KSK and ZSK
// (ECDSA P-256, ldns-keygen) by ldns-signzone, broken where the zone says.
// It returns the file and, for a signed zone, the KSK's DS record, the
// trust anchor.
func (l *lab) signZone(ctx context.Context, t *testing.T, dir string, z zoneSpec) (file, ds string) {
	t.Helper()
	src := filepath.Join(dir, z.name+".zone")
	writeFile(t, src, strings.Join(z.records, "\n")+"\n", 0o644)
	if !z.signed {
		return src, ""
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	keygen := func(args ...string) string {
		t.Helper()
		out, err := runIn(ctx, keys, l.tools.ldnsKeygen, append([]string{"-a", "ECDSAP256SHA256"}, args...)...)
		if err != nil {
			t.Fatalf("realservers: ldns-keygen: %v", err)
		}
		return filepath.Join(keys, strings.TrimSpace(out))
	}
	ksk, zsk := keygen("-k", z.name), keygen(z.name)
	b, err := os.ReadFile(ksk + ".ds")
	if err != nil {
		t.Fatal(err)
	}
	ds = strings.Join(strings.Fields(string(b)), " ")

	sign := func(out string, extra ...string) string {
		t.Helper()
		args := []string{"-o", z.name, "-f", out}
		if z.nsec3 {
			args = append(args, "-n", "-t", "0") // RFC 9276: no extra iterations, no salt
		}
		args = append(append(append(args, extra...), src), ksk, zsk)
		if _, err := run(ctx, "", l.tools.ldnsSignzone, args...); err != nil {
			t.Fatalf("realservers: ldns-signzone: %v", err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	signed := sign(src + ".signed")
	for _, br := range z.breaks {
		var sig string
		switch br.how {
		case breakTLSASig:
			sig = tamperSig(t, rrsigLine(t, signed, br.owner, br.rrtype))
		case breakMXSigExpired:
			// The same keys, signing last month for a month that ended
			// yesterday.
			now := time.Now().UTC()
			old := sign(src+".expired", "-i", now.AddDate(0, -2, 0).Format("20060102"), "-e", now.AddDate(0, 0, -1).Format("20060102"))
			sig = rrsigLine(t, old, br.owner, br.rrtype)
		default:
			t.Fatalf("realservers: unknown zone break %q", br.how)
		}
		signed = strings.Replace(signed, rrsigLine(t, signed, br.owner, br.rrtype), sig, 1)
	}
	file = src + ".served"
	writeFile(t, file, signed, 0o644)
	return file, ds
}

// rrsigLine finds the RRSIG covering (owner, rrtype) in ldns-signzone's
// output (one RR per line: owner TTL class RRSIG covered ...).
func rrsigLine(t *testing.T, zone, owner, rrtype string) string {
	t.Helper()
	for _, line := range strings.Split(zone, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.EqualFold(f[0], owner+".") && f[3] == "RRSIG" && f[4] == rrtype {
			return line
		}
	}
	t.Fatalf("realservers: no RRSIG over %s %s in the signed zone", owner, rrtype)
	return ""
}

// tamperSig changes one byte in the middle of an RRSIG's signature (the
// last field, base64): the record still parses, the signature fails.
func tamperSig(t *testing.T, line string) string {
	t.Helper()
	f := strings.Fields(line)
	sig, err := base64.StdEncoding.DecodeString(f[len(f)-1])
	if err != nil {
		t.Fatalf("realservers: RRSIG signature %q: %v", f[len(f)-1], err)
	}
	sig[len(sig)/2] ^= 0x01
	f[len(f)-1] = base64.StdEncoding.EncodeToString(sig)
	return strings.Join(f, "\t")
}
