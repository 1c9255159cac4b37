package peer

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mxsurvey/mxsurvey/internal/workers"
)

// maxSniffBytes caps the copy of the server's handshake bytes kept to
// recover a chain crypto/tls refused to parse (see plaintextChain). Real
// chains are a few KiB; the cap keeps 10,000 handshakes in flight cheap.
const maxSniffBytes = 64 << 10

// Config is what the client offers in a handshake. Which groups and suites
// a survey offers changes what it measures, so they are the caller's.
type Config struct {
	ServerName       string // SNI; see SNIName
	MinVersion       uint16
	MaxVersion       uint16 // 0: Go's default (TLS 1.3)
	CurvePreferences []tls.CurveID
	CipherSuites     []uint16
	NextProtos       []string // ALPN; nil offers none
}

// Result is what a handshake recorded.
type Result struct {
	// Chain is the certificate list as the server sent it, leaf first, even
	// when the handshake failed afterwards; nil when none was seen.
	Chain [][]byte
	// State is the negotiated connection; valid only when Handshake
	// succeeded.
	State tls.ConnectionState
	// Leaf is Chain[0] as crypto/tls parsed it, when the handshake
	// succeeded: a caller describing the leaf need not parse it again (a
	// second parse was 2% of a probe's CPU).
	Leaf *x509.Certificate
}

// handshakers run the TLS handshakes of every caller. A handshake (ML-KEM
// above all) needs a deep stack, and a goroutine keeps the stack it grew: a
// probe or fetch that spends seconds waiting on a slow server would hold 32
// KiB of stack for the few milliseconds of its handshake. Handed to a few
// workers, the callers' own goroutines stay at a few KiB. A worker idle for
// a second ends: in a steady scan it is busy again within milliseconds, and
// after a burst of handshakes the stacks should not linger (with 5 s, 2,546
// idle workers were alive at a 10,000-probe flight run's memory peak).
var handshakers = workers.New(time.Second)

// Handshake runs a TLS client handshake over c and records what the server
// presented, verifying nothing: a survey records every chain, and the
// analyzer judges it later against the roots it is given. pre are bytes
// already read from c (by a buffered reader of the plaintext protocol) that
// TLS must see first, as a client reading the socket directly would.
//
// Deadlines are the caller's, set on c: a context that ends should push c's
// deadline into the past (Handshake starts no goroutine to watch one). The
// handshake itself runs on a shared worker goroutine (see handshakers).
//
// On failure the returned error is a *CertParseError when a certificate of
// the chain does not parse, else a *HandshakeError; Result.Chain still holds
// the chain when the server sent one: crypto/tls gives up before any callback
// when a certificate does not parse, and in TLS 1.2 and older the chain
// travelled in clear, so it is recovered from the bytes read (in TLS 1.3 it
// was encrypted and is lost).
func Handshake(c net.Conn, pre []byte, cfg Config) (*tls.Conn, Result, error) {
	var sent [][]byte
	tc := &tls.Config{
		InsecureSkipVerify: true,
		// Called with the chain as sent; with InsecureSkipVerify it is the
		// one place the raw DER list is handed over before the connection
		// state exists.
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			sent = rawCerts
			return nil
		},
		MinVersion:       cfg.MinVersion,
		MaxVersion:       cfg.MaxVersion,
		CurvePreferences: cfg.CurvePreferences,
		CipherSuites:     cfg.CipherSuites,
		NextProtos:       cfg.NextProtos,
		ServerName:       cfg.ServerName,
		Renegotiation:    tls.RenegotiateNever,
	}
	rec := recordings.Get().(*[]byte)
	hc := &handshakeConn{Conn: c, pre: pre, record: true, rec: (*rec)[:0]}
	conn := tls.Client(hc, tc)
	err := handshakers.Run(conn.Handshake)
	hc.record = false
	// plaintextChain copies what it keeps: the recording goes back to the
	// pool whatever the outcome.
	var recovered [][]byte
	if err != nil && sent == nil {
		recovered = plaintextChain(hc.rec)
	}
	*rec, hc.rec = hc.rec[:0], nil
	recordings.Put(rec)
	if err != nil {
		chain := sent
		if chain == nil {
			chain = recovered
		}
		if len(chain) == 0 {
			return nil, Result{}, &HandshakeError{Err: err}
		}
		if perr := chainParseError(chain); perr != nil {
			return nil, Result{Chain: chain}, &CertParseError{Err: perr, Handshake: err}
		}
		return nil, Result{Chain: chain}, &HandshakeError{Err: err}
	}
	st := conn.ConnectionState()
	if sent == nil {
		// Defensive: the callback has always run for a full handshake, and
		// no session cache is kept, so no handshake is resumed.
		for _, c := range st.PeerCertificates {
			sent = append(sent, c.Raw)
		}
	}
	res := Result{Chain: sent, State: st}
	if len(st.PeerCertificates) > 0 && len(sent) > 0 && bytes.Equal(st.PeerCertificates[0].Raw, sent[0]) {
		res.Leaf = st.PeerCertificates[0]
	}
	return conn, res, nil
}

// SNIName is the SNI to send for a host name: the name without its trailing
// dot, or none when there is no name (RFC 6066 §3 forbids addresses in SNI).
func SNIName(host string) string {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ""
	}
	return host
}

// CapText cuts s to at most n bytes without splitting a UTF-8 sequence:
// error text can embed peer-chosen bytes.
func CapText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Metered counts the bytes read from the peer and refuses to read more than
// Max of them, so no peer can make a conversation read without bound.
type Metered struct {
	net.Conn
	Max, N int64 // the cap, and the bytes read so far
}

func (c *Metered) Read(p []byte) (int, error) {
	left := c.Max - c.N
	if left <= 0 {
		return 0, ErrByteLimit
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.N += int64(n)
	return n, err
}

// recordings are the buffers handshakeConn records into, kept for the next
// handshake: a fresh one grew by copying in every handshake, 4% of all the
// scanner allocated. A buffer is held only while its handshake runs.
var recordings = sync.Pool{New: func() any { return new([]byte) }}

// handshakeConn is what TLS reads from: first the bytes already buffered,
// then the connection; while record is set it keeps a capped copy of what it
// hands out, for plaintextChain.
type handshakeConn struct {
	net.Conn
	pre    []byte
	record bool
	rec    []byte
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	var (
		n   int
		err error
	)
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	if c.record {
		keep := min(n, maxSniffBytes-len(c.rec))
		c.rec = append(c.rec, p[:keep]...)
	}
	return n, err
}

// chainParseError returns the first certificate of chain that crypto/x509
// cannot parse, as an error naming its position.
func chainParseError(chain [][]byte) error {
	for i, der := range chain {
		if _, err := x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("certificate %d of %d: %w", i, len(chain), err)
		}
	}
	return nil
}

// plaintextChain extracts the server's certificate list from the bytes it
// sent during a TLS 1.2 (or older) handshake, where the Certificate message
// (RFC 5246 §7.4.2) travels unencrypted. In TLS 1.3 the message is encrypted
// and nil is returned. Incomplete input gives nil.
func plaintextChain(b []byte) [][]byte {
	var hs []byte
	for len(b) >= 5 {
		typ, n := b[0], int(b[3])<<8|int(b[4])
		if len(b) < 5+n {
			break
		}
		frag := b[5 : 5+n]
		b = b[5+n:]
		if typ == 20 || typ == 23 {
			break // ChangeCipherSpec or application data: the rest is encrypted
		}
		if typ == 22 {
			hs = append(hs, frag...)
		}
	}
	for len(hs) >= 4 {
		typ, n := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
		if len(hs) < 4+n {
			return nil
		}
		body := hs[4 : 4+n]
		hs = hs[4+n:]
		if typ != 11 {
			continue
		}
		if len(body) < 3 {
			return nil
		}
		list := body[3:]
		if total := int(body[0])<<16 | int(body[1])<<8 | int(body[2]); total < len(list) {
			list = list[:total]
		}
		var chain [][]byte
		for len(list) >= 3 {
			m := int(list[0])<<16 | int(list[1])<<8 | int(list[2])
			if len(list) < 3+m {
				break
			}
			chain = append(chain, bytes.Clone(list[3:3+m]))
			list = list[3+m:]
		}
		return chain
	}
	return nil
}
