// Package lab is the internet in a box (DESIGN 6): an authoritative DNS
// server for synthetic zones under .test (RFC 2606) and SMTP servers on many
// 127.x.y.z addresses, each with a known behaviour, plus the ground truth a
// scan and an analysis of the lab must reproduce.
//
// The truth is stated from the lab's own configuration (the case that made
// each server), never by running the scanner's parsers or the analyzer's
// matcher, so that one bug cannot hide on both sides.
package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Files a lab writes into its directory.
const (
	DomainsFile      = "domains.csv"
	CAFile           = "ca.pem"
	InfoFile         = "lab.json"
	TruthDomainsFile = "truth-domains.jsonl"
	TruthHostsFile   = "truth-hosts.jsonl"
)

// Config describes a lab. The zero value of every field but OutDir is usable.
type Config struct {
	WorldParams
	DNSAddr  string // UDP and TCP; default 127.0.0.53:5353; port 0 picks a free port
	SMTPPort int    // port of the 0.0.0.0 tcp4 listener; 0 picks a free port
	OutDir   string // required
	NoTruth  bool   // skip the truth files (load tests of a million domains)
}

// Lab is a running lab.
type Lab struct {
	// DNSAddr is the bound DNS address (UDP and TCP), SMTPPort the bound SMTP
	// port, Dir the output directory.
	DNSAddr  string
	SMTPPort int
	Dir      string
	// Info is what lab.json holds.
	Info Info

	world *World
	auth  *authority
	udp   *dns.Server
	tcp   *dns.Server
	smtp  *smtpServer
	once  sync.Once
	err   error
}

// Info is the content of lab.json.
type Info struct {
	DNS             string            `json:"dns"`
	SMTPPort        int               `json:"smtp_port"`
	SMTPListen      string            `json:"smtp_listen"`
	Seed            int64             `json:"seed"`
	Domains         int               `json:"domains"`
	Providers       int               `json:"providers"`
	HostingHosts    int               `json:"hosting_servers"`
	LatencyMin      string            `json:"latency_min"`
	LatencyMax      string            `json:"latency_max"`
	CaseDomains     map[string]int    `json:"case_domains"`     // domains per case, and per background kind (bg_*)
	BackgroundCases map[string]int    `json:"background_cases"` // background domains per kind/server case
	CaseTargets     map[string]int    `json:"case_targets"`     // truth-hosts rows per case name
	Targets         int               `json:"targets"`          // rows in truth-hosts.jsonl
	TruthWritten    bool              `json:"truth_written"`    // false with NoTruth
	StartSeconds    float64           `json:"start_seconds"`    // from Start to files written
	ScannerAssume   string            `json:"scanner_assume"`   // what the truth assumes of the scan
	Files           map[string]string `json:"files"`
}

// DomainsPath and the other path methods name the lab's files.
func (l *Lab) DomainsPath() string      { return filepath.Join(l.Dir, DomainsFile) }
func (l *Lab) CAPath() string           { return filepath.Join(l.Dir, CAFile) }
func (l *Lab) InfoPath() string         { return filepath.Join(l.Dir, InfoFile) }
func (l *Lab) TruthDomainsPath() string { return filepath.Join(l.Dir, TruthDomainsFile) }
func (l *Lab) TruthHostsPath() string   { return filepath.Join(l.Dir, TruthHostsFile) }

// Start binds the servers, starts serving, and writes the directory's files;
// it returns once everything is written. Close stops it.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	t0 := time.Now()
	if cfg.OutDir == "" {
		return nil, errors.New("lab: an output directory is required")
	}
	if cfg.DNSAddr == "" {
		cfg.DNSAddr = "127.0.0.53:5353"
	}
	w, err := NewWorld(cfg.WorldParams)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthority(w.seed)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	l := &Lab{Dir: cfg.OutDir, world: w, auth: auth}
	if err := l.listen(cfg); err != nil {
		return nil, err
	}
	l.Info = Info{
		DNS: l.DNSAddr, SMTPPort: l.SMTPPort, SMTPListen: "0.0.0.0:" + strconv.Itoa(l.SMTPPort),
		Seed: cfg.Seed, Domains: w.n, Providers: len(w.providers), HostingHosts: w.nHosting,
		LatencyMin: w.p.LatencyMin.String(), LatencyMax: w.p.LatencyMax.String(),
		ScannerAssume: "resolver " + l.DNSAddr + ", port " + strconv.Itoa(l.SMTPPort) +
			", SNI = MX host, TLS 1.3 offered, -ipv6, allow 127.0.0.0/8 and ::1/128, roots " + CAFile +
			fmt.Sprintf(", reply caps %d lines / %d bytes / %d-byte lines, %d certificates kept, step deadline under 60s",
				AssumeMaxReplyLines, AssumeMaxReplyBytes, AssumeMaxLineBytes, AssumeMaxChainCerts),
		Files: map[string]string{"domains": DomainsFile, "ca": CAFile, "truth_domains": TruthDomainsFile, "truth_hosts": TruthHostsFile},
	}
	if err := l.writeFiles(ctx, !cfg.NoTruth); err != nil {
		l.Close()
		return nil, err
	}
	l.Info.TruthWritten = !cfg.NoTruth
	l.Info.StartSeconds = time.Since(t0).Seconds()
	if err := writeJSONFile(l.InfoPath(), l.Info); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) listen(cfg Config) error {
	var pc net.PacketConn
	var tl net.Listener
	var err error
	// With port 0 the TCP listener must take the port UDP got; that port can
	// be taken over TCP already, so try a few.
	for try := 0; try < 10; try++ {
		pc, err = net.ListenPacket("udp", cfg.DNSAddr)
		if err != nil {
			return fmt.Errorf("lab: dns: %w", err)
		}
		tl, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(cfg.DNSAddr); port != "0" {
			return fmt.Errorf("lab: dns: %w", err)
		}
	}
	if err != nil {
		return fmt.Errorf("lab: dns: %w", err)
	}
	h := &dnsHandler{w: l.world}
	l.DNSAddr = pc.LocalAddr().String()
	l.udp = &dns.Server{PacketConn: pc, Handler: h}
	l.tcp = &dns.Server{Listener: tl, Handler: h, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	for _, s := range []*dns.Server{l.udp, l.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() {
			_ = s.ActivateAndServe() // returns after Shutdown; a failure shows up as started never closing
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			return errors.New("lab: dns server did not start")
		}
	}
	// tcp4 only: [::1]:port must refuse, which is the smtp_refused case.
	sl, err := net.Listen("tcp4", "0.0.0.0:"+strconv.Itoa(cfg.SMTPPort))
	if err != nil {
		l.udp.Shutdown()
		l.tcp.Shutdown()
		return fmt.Errorf("lab: smtp: %w", err)
	}
	l.SMTPPort = sl.Addr().(*net.TCPAddr).Port
	l.smtp = newSMTPServer(l.world, l.auth, sl)
	l.smtp.wg.Add(1)
	go l.smtp.serve()
	return nil
}

// Close stops the servers and closes every open connection.
func (l *Lab) Close() error {
	l.once.Do(func() {
		var errs []error
		if l.udp != nil {
			errs = append(errs, l.udp.Shutdown())
		}
		if l.tcp != nil {
			errs = append(errs, l.tcp.Shutdown())
		}
		if l.smtp != nil {
			if err := l.smtp.close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		l.err = errors.Join(errs...)
	})
	return l.err
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// chunk is the output for a run of consecutive domains, made by a worker and
// written in order.
type chunk struct {
	csv, dom, host bytes.Buffer
	caseDomains    map[string]int
	bgCases        map[string]int
	caseTargets    map[string]int
	targets        int
	err            error
}

const chunkSize = 2048

func (l *Lab) writeFiles(ctx context.Context, truth bool) error {
	w := l.world
	if err := os.WriteFile(l.CAPath(), l.auth.rootPEM(), 0o644); err != nil {
		return err
	}
	files := []string{l.DomainsPath()}
	if truth {
		files = append(files, l.TruthDomainsPath(), l.TruthHostsPath())
	}
	outs := make([]*bufio.Writer, len(files))
	for i, p := range files {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		outs[i] = bufio.NewWriterSize(f, 1<<20)
	}
	l.Info.CaseDomains = map[string]int{}
	l.Info.CaseTargets = map[string]int{}
	l.Info.BackgroundCases = map[string]int{}
	if _, err := io.WriteString(outs[0], "rank,domain\n"); err != nil {
		return err
	}
	if truth {
		for _, t := range w.providerTargets() {
			h, err := w.hostTruth(l.auth, t, l.SMTPPort, nil)
			if err != nil {
				return err
			}
			if err := appendJSON(outs[2], h); err != nil {
				return err
			}
			l.Info.Targets++
			for _, c := range h.Cases {
				l.Info.CaseTargets[c]++
			}
		}
	}

	nChunks := (w.n + chunkSize - 1) / chunkSize
	results := make([]chan *chunk, nChunks)
	for i := range results {
		results[i] = make(chan *chunk, 1)
	}
	workers := runtime.GOMAXPROCS(0)
	window := make(chan struct{}, 2*workers) // bounds memory: chunks made but not yet written
	next := make(chan int)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Cancel before waiting: an early return leaves the feeder blocked.
	defer func() { cancel(); wg.Wait() }()
	go func() {
		defer close(next)
		for i := range nChunks {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] <- l.makeChunk(i, truth)
			}
		}()
	}
	for i := range nChunks {
		var c *chunk
		select {
		case c = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-window
		if c.err != nil {
			return c.err
		}
		for k, buf := range []*bytes.Buffer{&c.csv, &c.dom, &c.host}[:len(outs)] {
			if _, err := outs[k].Write(buf.Bytes()); err != nil {
				return err
			}
		}
		for k, v := range c.caseDomains {
			l.Info.CaseDomains[k] += v
		}
		for k, v := range c.bgCases {
			l.Info.BackgroundCases[k] += v
		}
		for k, v := range c.caseTargets {
			l.Info.CaseTargets[k] += v
		}
		l.Info.Targets += c.targets
	}
	for _, o := range outs {
		if err := o.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) makeChunk(ci int, truth bool) *chunk {
	w := l.world
	c := &chunk{caseDomains: map[string]int{}, bgCases: map[string]int{}, caseTargets: map[string]int{}}
	for i := ci * chunkSize; i < min((ci+1)*chunkSize, w.n); i++ {
		d := w.domain(i)
		c.csv.WriteString(strconv.Itoa(i + 1))
		c.csv.WriteByte(',')
		c.csv.WriteString(d.name)
		c.csv.WriteByte('\n')
		td := w.truthDomain(d)
		c.caseDomains[td.Cases[0]]++
		if len(td.Cases) > 1 {
			c.bgCases[strings.Join(td.Cases, "/")]++
		}
		if !truth {
			continue
		}
		if c.err = appendJSON(&c.dom, td); c.err != nil {
			return c
		}
		memo := map[string]certDigest{}
		for _, t := range w.ownedTargets(d) {
			h, err := w.hostTruth(l.auth, t, l.SMTPPort, memo)
			if err != nil {
				c.err = err
				return c
			}
			if c.err = appendJSON(&c.host, h); c.err != nil {
				return c
			}
			c.targets++
			for _, k := range h.Cases {
				c.caseTargets[k]++
			}
		}
	}
	return c
}

func appendJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}
