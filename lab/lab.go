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
	// TruthBackground makes Start return as soon as DNS and SMTP serve and
	// domains.csv, ca.pem and lab.json are written; the truth files are
	// written meanwhile and appear, complete, when lab.json says
	// truth_ready (WaitTruth, ReadTruth wait for that). Without it Start
	// returns after the truth files are written.
	TruthBackground bool
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

	truthCancel context.CancelFunc
	truthDone   chan struct{} // closed when the background truth writer ends
	truthErr    error         // set before truthDone closes
	truthInfo   Info          // lab.json as the writer left it, set before truthDone closes
	truthOnce   sync.Once
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
	CaseTargets     map[string]int    `json:"case_targets"`     // truth-hosts rows per case name, and per dialect (dialect_*)
	Targets         int               `json:"targets"`          // rows in truth-hosts.jsonl (once truth_ready)
	TruthWritten    bool              `json:"truth_written"`    // truth files asked for: false with NoTruth
	TruthReady      bool              `json:"truth_ready"`      // the truth files are complete (they appear only then)
	TruthError      string            `json:"truth_error,omitempty"`
	PID             int               `json:"pid"`            // the lab's process: ReadTruth stops waiting if it is gone
	StartSeconds    float64           `json:"start_seconds"`  // from Start to serving, domains.csv and lab.json written
	TruthSeconds    float64           `json:"truth_seconds"`  // from Start to the truth files complete
	ScannerAssume   string            `json:"scanner_assume"` // what the truth assumes of the scan
	Files           map[string]string `json:"files"`
}

// DomainsPath and the other path methods name the lab's files.
func (l *Lab) DomainsPath() string      { return filepath.Join(l.Dir, DomainsFile) }
func (l *Lab) CAPath() string           { return filepath.Join(l.Dir, CAFile) }
func (l *Lab) InfoPath() string         { return filepath.Join(l.Dir, InfoFile) }
func (l *Lab) TruthDomainsPath() string { return filepath.Join(l.Dir, TruthDomainsFile) }
func (l *Lab) TruthHostsPath() string   { return filepath.Join(l.Dir, TruthHostsFile) }

// Start binds the servers, starts serving, and writes the directory's files:
// domains.csv, ca.pem and lab.json, and the truth files, before it returns or
// (TruthBackground) after. Every file appears complete (written aside and
// renamed). Close stops it.
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
	// A lab.json or truth left by an earlier lab in this directory must not
	// pass for this one's.
	for _, f := range []string{InfoFile, TruthDomainsFile, TruthHostsFile} {
		if err := os.Remove(filepath.Join(cfg.OutDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
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
		Files:        map[string]string{"domains": DomainsFile, "ca": CAFile, "truth_domains": TruthDomainsFile, "truth_hosts": TruthHostsFile},
		TruthWritten: !cfg.NoTruth,
		PID:          os.Getpid(),
	}
	fail := func(err error) (*Lab, error) {
		l.Close()
		return nil, err
	}
	if err := writeFileAtomic(l.CAPath(), l.auth.rootPEM()); err != nil {
		return fail(err)
	}
	if err := l.writeDomains(ctx); err != nil {
		return fail(err)
	}
	if cfg.NoTruth || !cfg.TruthBackground {
		if !cfg.NoTruth {
			if err := l.writeTruth(ctx, &l.Info); err != nil {
				return fail(err)
			}
			l.Info.TruthReady = true
			l.Info.TruthSeconds = time.Since(t0).Seconds()
		}
		l.Info.StartSeconds = time.Since(t0).Seconds()
		if err := writeJSONFile(l.InfoPath(), l.Info); err != nil {
			return fail(err)
		}
		return l, nil
	}
	l.Info.StartSeconds = time.Since(t0).Seconds()
	if err := writeJSONFile(l.InfoPath(), l.Info); err != nil {
		return fail(err)
	}
	// The writer outlives Start's context (a command's context ends on
	// SIGTERM, when the truth is still wanted); Close stops it.
	tctx, cancel := context.WithCancel(context.Background())
	l.truthCancel, l.truthDone = cancel, make(chan struct{})
	info := l.Info
	go func() {
		defer close(l.truthDone)
		err := l.writeTruth(tctx, &info)
		if err == nil {
			info.TruthReady = true
			info.TruthSeconds = time.Since(t0).Seconds()
		} else if tctx.Err() == nil {
			info.TruthError = err.Error()
		}
		if tctx.Err() == nil {
			if werr := writeJSONFile(l.InfoPath(), info); werr != nil && err == nil {
				err = werr
			}
		}
		l.truthInfo, l.truthErr = info, err
	}()
	return l, nil
}

// WaitTruth waits until the truth files are complete (at once without
// TruthBackground); then l.Info holds the truth's counts. Call it from one
// goroutine at a time.
func (l *Lab) WaitTruth(ctx context.Context) error {
	if l.truthDone == nil {
		return nil
	}
	select {
	case <-l.truthDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.truthOnce.Do(func() { l.Info = l.truthInfo })
	return l.truthErr
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
	// A resolver serving a survey runs with a large receive buffer (unbound's
	// so-rcvbuf): at Linux's default 208 KiB a few hundred queries arriving
	// together overflow it, and each lost one costs its client a timeout.
	if uc, ok := pc.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(4 << 20) // capped at net.core.rmem_max; the default still serves
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
		if l.truthCancel != nil {
			l.truthCancel()
			<-l.truthDone
		}
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
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic writes a file aside and renames it into place: a reader
// sees no file or the whole file.
func writeFileAtomic(path string, data []byte) error {
	tmp := tmpName(path)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// tmpName is where a file is written before it is renamed into place.
func tmpName(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
}

// chunk is the output for a run of consecutive domains, made by a worker and
// written in order.
type chunk struct {
	a, b        bytes.Buffer // domains.csv; or truth-domains and truth-hosts
	caseDomains map[string]int
	bgCases     map[string]int
	caseTargets map[string]int
	targets     int
	err         error
}

const chunkSize = 2048

// chunkPool recycles chunks, whose buffers grow to a few MB.
var chunkPool = sync.Pool{New: func() any {
	return &chunk{caseDomains: map[string]int{}, bgCases: map[string]int{}, caseTargets: map[string]int{}}
}}

func getChunk() *chunk {
	c := chunkPool.Get().(*chunk)
	c.a.Reset()
	c.b.Reset()
	clear(c.caseDomains)
	clear(c.bgCases)
	clear(c.caseTargets)
	c.targets, c.err = 0, nil
	return c
}

// writeDomains writes domains.csv and counts the domains per case.
func (l *Lab) writeDomains(ctx context.Context) error {
	l.Info.CaseDomains = map[string]int{}
	l.Info.BackgroundCases = map[string]int{}
	header := []byte("rank,domain\n")
	return l.writeChunked(ctx, []string{l.DomainsPath()}, [][]byte{header}, l.domainsChunk, func(c *chunk) {
		for k, v := range c.caseDomains {
			l.Info.CaseDomains[k] += v
		}
		for k, v := range c.bgCases {
			l.Info.BackgroundCases[k] += v
		}
	})
}

// writeTruth writes the two truth files and counts the targets into info.
func (l *Lab) writeTruth(ctx context.Context, info *Info) error {
	w := l.world
	info.CaseTargets = map[string]int{}
	info.Targets = 0
	var pre []byte
	for _, t := range w.providerTargets() {
		h, err := w.hostTruth(l.auth, t, l.SMTPPort, nil)
		if err != nil {
			return err
		}
		pre = appendTruthHost(pre, &h)
		info.Targets++
		for _, c := range h.Cases {
			info.CaseTargets[c]++
		}
		if h.Dialect != "" {
			info.CaseTargets["dialect_"+h.Dialect]++
		}
	}
	return l.writeChunked(ctx, []string{l.TruthDomainsPath(), l.TruthHostsPath()}, [][]byte{nil, pre}, l.truthChunk, func(c *chunk) {
		for k, v := range c.caseTargets {
			info.CaseTargets[k] += v
		}
		info.Targets += c.targets
	})
}

// writeChunked makes the chunks of all domains on every core and writes
// them in order into files (one or two: chunk.a, chunk.b), each written
// aside and renamed into place once complete.
func (l *Lab) writeChunked(ctx context.Context, paths []string, heads [][]byte, mk func(int) *chunk, merge func(*chunk)) error {
	w := l.world
	outs := make([]*bufio.Writer, len(paths))
	files := make([]*os.File, len(paths))
	defer func() {
		for i, f := range files {
			if f != nil {
				f.Close()
				os.Remove(tmpName(paths[i]))
			}
		}
	}()
	for i, p := range paths {
		f, err := os.Create(tmpName(p))
		if err != nil {
			return err
		}
		files[i] = f
		outs[i] = bufio.NewWriterSize(f, 1<<20)
		if _, err := outs[i].Write(heads[i]); err != nil {
			return err
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
				results[i] <- mk(i)
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
		for k, buf := range []*bytes.Buffer{&c.a, &c.b}[:len(outs)] {
			if _, err := outs[k].Write(buf.Bytes()); err != nil {
				return err
			}
		}
		merge(c)
		chunkPool.Put(c)
	}
	for i, o := range outs {
		if err := o.Flush(); err != nil {
			return err
		}
		if err := files[i].Close(); err != nil {
			return err
		}
		files[i] = nil
	}
	for _, p := range paths {
		if err := os.Rename(tmpName(p), p); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) domainsChunk(ci int) *chunk {
	w := l.world
	c := getChunk()
	for i := ci * chunkSize; i < min((ci+1)*chunkSize, w.n); i++ {
		d := w.domain(i)
		b := c.a.AvailableBuffer()
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ',')
		b = append(b, d.name...)
		c.a.Write(append(b, '\n'))
		cases := w.domainCases(d)
		c.caseDomains[cases[0]]++
		if len(cases) > 1 {
			c.bgCases[strings.Join(cases, "/")]++
		}
	}
	return c
}

func (l *Lab) truthChunk(ci int) *chunk {
	w := l.world
	c := getChunk()
	memo := map[string]certDigest{}
	for i := ci * chunkSize; i < min((ci+1)*chunkSize, w.n); i++ {
		d := w.domain(i)
		td := w.truthDomain(d)
		c.a.Write(appendTruthDomain(c.a.AvailableBuffer(), &td))
		clear(memo)
		for _, t := range w.ownedTargets(d) {
			h, err := w.hostTruth(l.auth, t, l.SMTPPort, memo)
			if err != nil {
				c.err = err
				return c
			}
			c.b.Write(appendTruthHost(c.b.AvailableBuffer(), &h))
			c.targets++
			for _, k := range h.Cases {
				c.caseTargets[k]++
			}
			if h.Dialect != "" {
				c.caseTargets["dialect_"+h.Dialect]++
			}
		}
	}
	return c
}
