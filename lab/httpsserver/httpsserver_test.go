package httpsserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/internal/labtest"
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// start serves the shared world's policy hosts and states its truth for
// the bound port.
func start(t *testing.T) (*world.World, *pki.Authority, *truth.Truth, int) {
	t.Helper()
	w, auth, _, err := labtest.World(25)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(w, auth, ln)
	t.Cleanup(func() { s.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	tr, err := truth.NewStater(w, auth, 25, port).All()
	if err != nil {
		t.Fatal(err)
	}
	return w, auth, tr, port
}

// fetched is what a client fetching a policy as a scan does (docs/schema.md:
// SNI mta-sts.<d>, no verification, HTTP/1.1 GET, no redirect followed,
// 64 KiB kept of at most 1 MiB read) got.
type fetched struct {
	class, version, contentType, location string
	status                                int
	body                                  []byte
	n                                     int64
	chain                                 []*x509.Certificate
}

func fetch(t *testing.T, d, ip string, port int) fetched {
	t.Helper()
	var f fetched
	step := time.Second
	raw, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), step)
	if err != nil {
		f.class = classOf(err)
		return f
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(3 * step))
	tc := tls.Client(raw, &tls.Config{ServerName: "mta-sts." + d, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		f.class = classOf(err)
		return f
	}
	f.version = tls.VersionName(tc.ConnectionState().Version)
	f.chain = tc.ConnectionState().PeerCertificates
	tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return tc, nil },
		DisableKeepAlives: true, DisableCompression: true, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	req, _ := http.NewRequest(http.MethodGet, "https://mta-sts."+d+WellKnownPath, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		f.class = classOf(err)
		return f
	}
	defer resp.Body.Close()
	f.status, f.contentType, f.location = resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Location")
	var buf bytes.Buffer
	f.n, err = io.Copy(&buf, io.LimitReader(resp.Body, world.AssumeMaxBodyRead+1))
	f.body = buf.Bytes()[:min(buf.Len(), world.AssumeMaxBodyKept)]
	switch {
	case err != nil:
		f.class = classOf(err)
	case f.n > world.AssumeMaxBodyRead:
		f.class, f.n = world.ErrTooLarge, world.AssumeMaxBodyRead
	}
	return f
}

func classOf(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return world.ErrTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return world.ErrRefused
	case errors.Is(err, syscall.ECONNRESET):
		return world.ErrReset
	}
	return "other: " + err.Error()
}

// parses says whether a body is a policy by RFC 8461 §3.2: CRLF or LF
// lines of key: value, version STSv1, a mode, a max_age, an mx unless the
// mode is none.
func parses(body []byte) bool {
	kv := map[string][]string{}
	for _, line := range strings.Split(strings.TrimRight(string(body), "\r\n"), "\n") {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\r"), ":")
		if !ok {
			return false
		}
		kv[k] = append(kv[k], strings.TrimSpace(v))
	}
	age, err := strconv.Atoi(strings.Join(kv["max_age"], ""))
	mode := strings.Join(kv["mode"], "")
	return slices.Equal(kv["version"], []string{"STSv1"}) && slices.Contains([]string{"enforce", "testing", "none"}, mode) &&
		len(kv["mode"]) == 1 && err == nil && age >= 0 && age <= 31557600 && (mode == "none" || len(kv["mx"]) > 0)
}

// TestPolicies fetches every policy the truth says a scan fetches, from the
// address mta-sts.<d> has in the world's zones, and holds what comes back
// to the truth's policies row; and holds the truth's mta_sts_policy_ok to
// crypto/x509's verdict on the certificate (the lab's root, the name
// mta-sts.<d>), the response's type, and the body's grammar.
func TestPolicies(t *testing.T) {
	w, auth, tr, port := start(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(auth.RootPEM())
	classes := map[string]int{}
	for _, d := range tr.Domains {
		p := d.Policy
		if !p.STSFetched {
			continue
		}
		// The address, as a resolver finds it.
		name, ip := "mta-sts."+d.Domain, ""
		for hops := 0; hops < 3; hops++ {
			n := w.Lookup(name)
			if n.CNAME != "" {
				name = n.CNAME
				continue
			}
			if addrs := append(n.A, n.AAAA...); len(addrs) > 0 {
				ip = addrs[0].String()
			}
			break
		}
		if ip != p.STSIP {
			t.Errorf("%s %v: mta-sts.<d> has %q, truth sts_ip %q", d.Domain, d.Cases, ip, p.STSIP)
		}
		var f fetched
		switch {
		case ip == "":
			f.class = world.ErrNoAddress
		case !netip.MustParseAddr(ip).IsLoopback():
			f.class = world.ErrBlocked
		default:
			f = fetch(t, d.Domain, ip, port)
		}
		classes[f.class]++
		if f.class != p.STSErrorClass || f.version != p.STSTLSVersion || f.status != int(p.STSHTTPStatus) ||
			f.contentType != p.STSContentType || f.location != p.STSLocation || !bytes.Equal(f.body, p.STSBody) ||
			f.n != p.STSBodyLen || (f.n > world.AssumeMaxBodyKept) != p.STSBodyTruncated {
			t.Errorf("%s %v: fetched class %q %s %d %q %q %d bytes (%d kept); truth %+v", d.Domain, d.Cases, f.class, f.version,
				f.status, f.contentType, f.location, f.n, len(f.body), p)
			continue
		}
		if p.STSURL != "https://mta-sts."+d.Domain+":"+strconv.Itoa(port)+WellKnownPath {
			t.Errorf("%s: sts_url %s", d.Domain, p.STSURL)
		}
		webpki := false
		if len(f.chain) > 0 {
			inter := x509.NewCertPool()
			for _, c := range f.chain[1:] {
				inter.AddCert(c)
			}
			_, err := f.chain[0].Verify(x509.VerifyOptions{DNSName: "mta-sts." + d.Domain, Roots: roots, Intermediates: inter})
			webpki = err == nil
		}
		mt, _, _ := mime.ParseMediaType(f.contentType)
		ok := f.class == "" && webpki && f.status == 200 && mt == "text/plain" && parses(f.body)
		if want := d.Facts.MTASTSPolicyOK || !d.Facts.MTASTSRecord; ok != want && d.Facts.MTASTSRecord {
			t.Errorf("%s %v: policy ok %v (webpki %v, %d %s, parses %v); truth mta_sts_policy_ok %v", d.Domain, d.Cases, ok, webpki,
				f.status, f.contentType, parses(f.body), d.Facts.MTASTSPolicyOK)
		}
	}
	t.Logf("fetches by error class: %v", classes)
	for _, c := range []string{"", world.ErrTimeout, world.ErrReset, world.ErrRefused, world.ErrTooLarge, world.ErrBlocked, world.ErrNoAddress} {
		if classes[c] == 0 {
			t.Errorf("no fetch of class %q in the world", c)
		}
	}
}

// TestOtherRequests: another path gets a 404; a provider's policy host
// refuses a handshake for a name it has no policy for.
func TestOtherRequests(t *testing.T) {
	_, _, tr, port := start(t)
	for _, d := range tr.Domains {
		if d.Policy.STSHTTPStatus != 200 || d.Policy.STSErrorClass != "" {
			continue
		}
		c, err := tls.Dial("tcp", net.JoinHostPort(d.Policy.STSIP, strconv.Itoa(port)),
			&tls.Config{ServerName: "mta-sts." + d.Domain, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /robots.txt HTTP/1.1\r\nHost: mta-sts."+d.Domain+"\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if !bytes.HasPrefix(b, []byte("HTTP/1.1 404 Not Found\r\n")) {
			t.Errorf("GET /robots.txt: %q", b)
		}
		if slices.Contains(d.Cases, "bg_provider") {
			_, err := tls.Dial("tcp", net.JoinHostPort(d.Policy.STSIP, strconv.Itoa(port)),
				&tls.Config{ServerName: "mta-sts.nosuch.test", InsecureSkipVerify: true})
			if err == nil {
				t.Error("a provider's policy host served an unknown SNI")
			}
			return
		}
	}
	t.Error("no provider-hosted policy in the world")
}
