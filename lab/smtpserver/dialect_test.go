package smtpserver

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/internal/tcpserve"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// The dialects as realservers/ saw Postfix and Exim send them (and the two
// kinds it has no server for), one pattern per reply line; <name> is the
// server's wire name and <ip> the client's address.
var dialectShapes = map[string]struct{ greeting, ehlo, starttls string }{
	"lab":       {`^220 <name> ESMTP mxsurvey-lab$`, `^250-<name>$`, `^220 2\.0\.0 Ready to start TLS$`},
	"postfix":   {`^220 <name> ESMTP Postfix \(Debian/GNU\)$`, `^250-<name>$`, `^220 2\.0\.0 Ready to start TLS$`},
	"exim":      {`^220[ -]<name> ESMTP Exim 4\.96 (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$`, `^250-<name> Hello probe\.test \[<ip>\]$`, `^220 TLS go ahead$`},
	"microsoft": {`^220 <name> Microsoft ESMTP MAIL Service ready at (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$`, `^250-<name> Hello \[<ip>\]$`, `^220 2\.0\.0 SMTP server ready$`},
	"masked":    {`^220 \*{32}$`, `^250-<name>$`, `^220 Go ahead with TLS$`},
}

func TestDialects(t *testing.T) {
	l, tr := testServer(t)
	count := map[string]int{}  // background targets per dialect
	multiline := map[int]int{} // greeting lines -> servers
	ehloDiffers := 0
	for _, h := range tr.Hosts {
		if h.Outcome != world.OutOK || !strings.HasPrefix(h.Cases[0], "bg_") {
			continue
		}
		count[h.Dialect]++
		if count[h.Dialect] > 6 && !(h.Dialect == "exim" && h.EHLOHost != h.BannerHost) {
			continue
		}
		shape, ok := dialectShapes[h.Dialect]
		if !ok {
			t.Fatalf("%s: dialect %q", h.IP, h.Dialect)
		}
		ip := netip.MustParseAddr(h.IP)
		slot, _ := l.world.AddrSlot(ip)
		srv, _ := l.world.ServerAt(slot)
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, strconv.Itoa(l.SMTPPort)), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		c := &smtpClient{c: conn, r: bufio.NewReader(conn)}
		match := func(what, pattern, name, line string) {
			t.Helper()
			pattern = strings.ReplaceAll(pattern, "<name>", regexp.QuoteMeta(name))
			pattern = strings.ReplaceAll(pattern, "<ip>", regexp.QuoteMeta(tcpserve.AddrOf(conn.LocalAddr()).String()))
			if !regexp.MustCompile(pattern).MatchString(line) {
				t.Errorf("%s %s (%v): %s %q, want %s", h.Dialect, h.IP, h.Cases, what, line, pattern)
			}
		}
		// The greeting's first line, raw.
		first, _ := c.r.ReadString('\n')
		first = strings.TrimRight(first, "\r\n")
		match("greeting", shape.greeting, srv.WireName(srv.Banner), first)
		n := 1
		for len(first) > 3 && first[3] == '-' {
			first, _ = c.r.ReadString('\n')
			first = strings.TrimRight(first, "\r\n")
			n++
		}
		multiline[n]++
		c.c.Write([]byte("EHLO probe.test\r\n"))
		line, _ := c.r.ReadString('\n')
		match("EHLO", shape.ehlo, srv.WireName(srv.EHLO), strings.TrimRight(line, "\r\n"))
		for !strings.HasPrefix(line, "250 ") {
			if line, err = c.r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		c.c.Write([]byte("STARTTLS\r\n"))
		line, _ = c.r.ReadString('\n')
		match("STARTTLS", shape.starttls, "", strings.TrimRight(line, "\r\n"))
		tc := tls.Client(conn, &tls.Config{ServerName: h.MXHost, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: %v", h.IP, err)
		}
		tc.Write([]byte("EHLO probe.test\r\n"))
		line, _ = bufio.NewReader(tc).ReadString('\n')
		match("post-TLS EHLO", shape.ehlo, srv.WireName(srv.PostEHLO), strings.TrimRight(line, "\r\n"))
		conn.Close()
		if h.Dialect == "exim" && h.EHLOHost != h.BannerHost {
			ehloDiffers++
		}
	}
	t.Logf("targets per dialect %v; greetings by lines %v; Exim EHLO ≠ banner: %d", count, multiline, ehloDiffers)
	for d := range dialectShapes {
		if count[d] == 0 {
			t.Errorf("no target speaks %s", d)
		}
	}
	if multiline[2] == 0 || multiline[3] == 0 || ehloDiffers == 0 {
		t.Errorf("want two- and three-line Exim greetings and an Exim EHLO naming another host than its banner")
	}
}
