// Package lab is the internet in a box (DESIGN 6): it wires the world
// (lab/world) to an authoritative DNS server for synthetic zones under .test
// (lab/dnsserver), SMTP servers on many 127.x.y.z addresses (lab/smtpserver)
// with certificates from the lab's CA (lab/pki), MTA-STS policy hosts on
// HTTPS (lab/httpsserver), and writes the directory a
// scan and an analysis start from: the domain list, the CA bundle, lab.json
// and the ground truth (lab/truth) they must reproduce.
//
// The truth is stated from the lab's own configuration (the case that made
// each server), never by running the scanner's parsers or the analyzer's
// matcher, so that one bug cannot hide on both sides: lab imports nothing
// of scan/, analyze/ or datasets/. README.md is the map.
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

	"github.com/mxsurvey/mxsurvey/lab/dnsserver"
	"github.com/mxsurvey/mxsurvey/lab/httpsserver"
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/smtpserver"
	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// Files a lab writes into its directory.
const (
	DomainsFile      = "domains.csv"
	CAFile           = "ca.pem"
	InfoFile         = "lab.json"
	TruthDomainsFile = "truth-domains.jsonl"
	TruthHostsFile   = "truth-hosts.jsonl"
	TruthTLSAFile    = "truth-tlsa.jsonl"
)

// Config describes a lab. The zero value of every field but OutDir is usable.
type Config struct {
	WorldParams
	DNSAddr  string // UDP and TCP; default 127.0.0.53:5353; port 0 picks a free port
	SMTPPort int    // port of the 0.0.0.0 tcp4 listener; 0 picks a free port
	// MTASTSPort is the port of the policy hosts' 0.0.0.0 tcp4 HTTPS
	// listener (a scan's -mta-sts-port); 0 picks a free port.
	MTASTSPort int
	OutDir     string // required
	NoTruth    bool   // skip the truth files (load tests of a million domains)
	// TruthBackground makes Start return as soon as DNS and SMTP serve and
	// domains.csv, ca.pem and lab.json are written; the truth files are
	// written meanwhile and appear, complete, when lab.json says
	// truth_ready (WaitTruth, ReadTruth wait for that). Without it Start
	// returns after the truth files are written.
	TruthBackground bool
	// ConnLog, when set, gets one line per SMTP connection when it ends:
	// "ADDRESS START END CLIENT", the address the client dialed, the accept
	// and close times in Unix nanoseconds by the lab's clock, and the
	// client's address. It is what a test counts politeness with: the
	// servers' own view.
	ConnLog io.Writer
}

// Lab is a running lab.
type Lab struct {
	// DNSAddr is the bound DNS address (UDP and TCP), SMTPPort the bound SMTP
	// port, MTASTSPort the bound HTTPS port of the policy hosts, Dir the
	// output directory.
	DNSAddr    string
	SMTPPort   int
	MTASTSPort int
	Dir        string
	// Info is what lab.json holds.
	Info Info

	world *world.World
	auth  *pki.Authority
	dns   *dnsserver.Server
	smtp  *smtpserver.Server
	https *httpsserver.Server
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
	MTASTSPort      int               `json:"mta_sts_port"` // the policy hosts' HTTPS port, on 0.0.0.0 (tcp4)
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
	TLSAHosts       int               `json:"tlsa_hosts"`       // rows in truth-tlsa.jsonl (once truth_ready)
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
func (l *Lab) TruthTLSAPath() string    { return filepath.Join(l.Dir, TruthTLSAFile) }

// Start binds the servers, starts serving, and writes the directory's files:
// domains.csv, ca.pem and lab.json, and the truth files, before it returns or
// (TruthBackground) after. Every file appears complete (written aside and
// renamed). Close stops it.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	t0 := time.Now()
	if err := cfg.checkOutDir(); err != nil {
		return nil, err
	}
	if cfg.DNSAddr == "" {
		cfg.DNSAddr = "127.0.0.53:5353"
	}
	w, err := world.New(cfg.WorldParams)
	if err != nil {
		return nil, err
	}
	auth, err := pki.New(w.Seed())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	// A lab.json or truth left by an earlier lab in this directory must not
	// pass for this one's.
	for _, f := range []string{InfoFile, TruthDomainsFile, TruthHostsFile, TruthTLSAFile} {
		if err := os.Remove(filepath.Join(cfg.OutDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	l := &Lab{Dir: cfg.OutDir, world: w, auth: auth}
	if err := l.listen(ctx, cfg); err != nil {
		return nil, err
	}
	l.Info = Info{
		DNS: l.DNSAddr, SMTPPort: l.SMTPPort, SMTPListen: "0.0.0.0:" + strconv.Itoa(l.SMTPPort), MTASTSPort: l.MTASTSPort,
		Seed: cfg.Seed, Domains: w.Len(), Providers: w.Providers(), HostingHosts: w.HostingServers(),
		LatencyMin: w.Params().LatencyMin.String(), LatencyMax: w.Params().LatencyMax.String(),
		ScannerAssume: "resolver " + l.DNSAddr + ", port " + strconv.Itoa(l.SMTPPort) +
			", SNI = MX host, TLS 1.3 offered, -ipv6, allow 127.0.0.0/8 and ::1/128, roots " + CAFile +
			fmt.Sprintf(", reply caps %d lines / %d bytes / %d-byte lines, %d certificates kept, step deadline under 60s",
				world.AssumeMaxReplyLines, world.AssumeMaxReplyBytes, world.AssumeMaxLineBytes, world.AssumeMaxChainCerts) +
			fmt.Sprintf("; policies on, resolver trusted for AD, -mta-sts-port %d, %d MX kept, %d TXT records of %d bytes kept, policy bodies %d bytes kept of %d read",
				l.MTASTSPort, world.AssumeMaxMX, world.AssumeMaxTXTRecords, world.AssumeMaxTXTBytes, world.AssumeMaxBodyKept, world.AssumeMaxBodyRead),
		Files: map[string]string{"domains": DomainsFile, "ca": CAFile, "truth_domains": TruthDomainsFile, "truth_hosts": TruthHostsFile,
			"truth_tlsa": TruthTLSAFile},
		TruthWritten: !cfg.NoTruth,
		PID:          os.Getpid(),
	}
	fail := func(err error) (*Lab, error) {
		l.Close()
		return nil, err
	}
	if err := writeFileAtomic(l.CAPath(), l.auth.RootPEM()); err != nil {
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

func (l *Lab) listen(ctx context.Context, cfg Config) error {
	ds, err := dnsserver.Start(cfg.DNSAddr, l.world, l.auth)
	if err != nil {
		return err
	}
	l.dns, l.DNSAddr = ds, ds.Addr
	// tcp4 only: [::1]:port must refuse, which is the smtp_refused case.
	// No TCP keepalive: a lab session lasts milliseconds to seconds, and
	// turning keepalive on cost four setsockopt calls per connection.
	lc := net.ListenConfig{KeepAlive: -1}
	sl, err := lc.Listen(ctx, "tcp4", "0.0.0.0:"+strconv.Itoa(cfg.SMTPPort))
	if err != nil {
		ds.Close()
		return fmt.Errorf("lab: smtp: %w", err)
	}
	l.SMTPPort = sl.Addr().(*net.TCPAddr).Port
	l.smtp = smtpserver.Serve(l.world, l.auth, sl, cfg.ConnLog)
	// tcp4 only, as SMTP: [::1]:port must refuse (sts_refused).
	hl, err := lc.Listen(ctx, "tcp4", "0.0.0.0:"+strconv.Itoa(cfg.MTASTSPort))
	if err != nil {
		ds.Close()
		l.smtp.Close()
		return fmt.Errorf("lab: mta-sts https: %w", err)
	}
	l.MTASTSPort = hl.Addr().(*net.TCPAddr).Port
	l.https = httpsserver.Serve(l.world, l.auth, hl)
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
		if l.dns != nil {
			errs = append(errs, l.dns.Close())
		}
		if l.smtp != nil {
			errs = append(errs, l.smtp.Close())
		}
		if l.https != nil {
			errs = append(errs, l.https.Close())
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
	a, b, c     bytes.Buffer // domains.csv; or truth-domains, truth-hosts and truth-tlsa
	caseDomains map[string]int
	bgCases     map[string]int
	caseTargets map[string]int
	targets     int
	tlsa        int
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
	c.c.Reset()
	clear(c.caseDomains)
	clear(c.bgCases)
	clear(c.caseTargets)
	c.targets, c.tlsa, c.err = 0, 0, nil
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

// writeTruth writes the three truth files and counts their rows into info.
func (l *Lab) writeTruth(ctx context.Context, info *Info) error {
	st := truth.NewStater(l.world, l.auth, l.SMTPPort, l.MTASTSPort)
	info.CaseTargets = map[string]int{}
	info.Targets, info.TLSAHosts = 0, 0
	hosts, tlsa, err := st.Providers()
	if err != nil {
		return err
	}
	var preHosts, preTLSA []byte
	for i := range hosts {
		preHosts = truth.AppendHost(preHosts, &hosts[i])
		info.Targets++
		countTarget(info.CaseTargets, &hosts[i])
	}
	for i := range tlsa {
		preTLSA = truth.AppendTLSA(preTLSA, &tlsa[i])
		info.TLSAHosts++
	}
	return l.writeChunked(ctx, []string{l.TruthDomainsPath(), l.TruthHostsPath(), l.TruthTLSAPath()}, [][]byte{nil, preHosts, preTLSA},
		func(ci int) *chunk { return l.truthChunk(st, ci) }, func(c *chunk) {
			for k, v := range c.caseTargets {
				info.CaseTargets[k] += v
			}
			info.Targets += c.targets
			info.TLSAHosts += c.tlsa
		})
}

// countTarget counts a truth row under each of its case labels and its
// dialect (lab.json's case_targets).
func countTarget(m map[string]int, h *truth.Host) {
	for _, c := range h.Cases {
		m[c]++
	}
	if h.Dialect != "" {
		m["dialect_"+h.Dialect]++
	}
}

// writeChunked makes the chunks of all domains on every core and writes
// them in order into files (one to three: chunk.a, chunk.b, chunk.c), each
// written aside and renamed into place once complete.
func (l *Lab) writeChunked(ctx context.Context, paths []string, heads [][]byte, mk func(int) *chunk, merge func(*chunk)) error {
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
	n := l.world.Len()
	nChunks := (n + chunkSize - 1) / chunkSize
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
		for k, buf := range []*bytes.Buffer{&c.a, &c.b, &c.c}[:len(outs)] {
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
	for i := ci * chunkSize; i < min((ci+1)*chunkSize, w.Len()); i++ {
		d := w.Domain(i)
		b := c.a.AvailableBuffer()
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ',')
		b = append(b, d.Name...)
		c.a.Write(append(b, '\n'))
		cases := w.Cases(d)
		c.caseDomains[cases[0]]++
		if len(cases) > 1 {
			c.bgCases[strings.Join(cases, "/")]++
		}
	}
	return c
}

func (l *Lab) truthChunk(st *truth.Stater, ci int) *chunk {
	w := l.world
	c := getChunk()
	memo := map[string]pki.Digest{}
	var hosts []truth.Host
	var tlsa []truth.TLSA
	for i := ci * chunkSize; i < min((ci+1)*chunkSize, w.Len()); i++ {
		td, hs, ts, err := st.Rows(w.Domain(i), memo, hosts[:0], tlsa[:0])
		if err != nil {
			c.err = err
			return c
		}
		hosts, tlsa = hs, ts
		c.a.Write(truth.AppendDomain(c.a.AvailableBuffer(), &td))
		for k := range hosts {
			c.b.Write(truth.AppendHost(c.b.AvailableBuffer(), &hosts[k]))
			c.targets++
			countTarget(c.caseTargets, &hosts[k])
		}
		for k := range tlsa {
			c.c.Write(truth.AppendTLSA(c.c.AvailableBuffer(), &tlsa[k]))
			c.tlsa++
		}
	}
	return c
}
