package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The field phase measures mxsurvey next to the tools the measurement field
// runs, zgrab2 (smtp module) and zdns (mxlookup), on one lab built for the
// comparison, the proving ground: every domain one MX name of its own, on a
// pool of 200 addresses, all TLS 1.3 with one certificate. Each tool runs
// with the same concurrency and with its rate limits lifted, one after the
// other against the same lab, so each round gives ratios measured side by
// side; the report takes their medians. The command lines are those of
// ../shared/anchors/README.md.

// provingGround are the lab flags of the proving ground (lab -tenant-pool).
var provingGround = []string{"-tenant-pool", "200", "-providers", "1", "-provider-share", "1", "-hosting-share", "0",
	"-cases", "default=0,hostile=0"}

// FieldResult is everything the field phase measured.
type FieldResult struct {
	Domains   int                 `json:"domains"`
	Conc      int                 `json:"concurrency"`
	Started   time.Time           `json:"started"`
	Ended     time.Time           `json:"ended"`
	Machine   Machine             `json:"machine"`
	Commands  string              `json:"commands"`
	Anchors   string              `json:"anchors"`           // where zgrab2 and zdns came from
	NoAnchors string              `json:"no_anchors"`        // why they were not run, when they were not
	Lab       *LabStats           `json:"lab,omitempty"`     // the proving ground's lab over the whole phase
	Rounds    []FieldRound        `json:"rounds"`            // one per run
	Argv      map[string][]string `json:"argv"`              // per step
	Errors    []string            `json:"errors,omitempty"`  // failed steps
	Targets   int64               `json:"targets,omitempty"` // (ip, mx_host) pairs zgrab2 was given
}

// FieldRound is one round: every tool once.
type FieldRound struct {
	ZDNS    *ToolFig `json:"zdns,omitempty"`
	DNSOnly *ToolFig `json:"mxsurvey_dns_only,omitempty"`     // -policies=false: MX, A, AAAA
	DNSPol  *ToolFig `json:"mxsurvey_dns_policies,omitempty"` // the default -policies: the policy records too
	Scan    *ToolFig `json:"mxsurvey,omitempty"`              // default groups
	ZGrab   *ToolFig `json:"zgrab2,omitempty"`                // its default: X25519
	ScanX   *ToolFig `json:"mxsurvey_x25519,omitempty"`       // -tls-groups x25519
	TLS     *LoopFig `json:"tlsloop,omitempty"`
	TLSX    *LoopFig `json:"tlsloop_x25519,omitempty"`
}

// ToolFig is one measured tool run.
type ToolFig struct {
	Proc     Proc             `json:"proc"`
	Items    int64            `json:"items"`              // domains (DNS) or probes
	OK       int64            `json:"ok"`                 // domains answered NOERROR, probes with a TLS handshake
	OutBytes int64            `json:"out_bytes"`          // JSON lines, or the Parquet parts (mx for DNS, probes for probes)
	Queries  int64            `json:"queries,omitempty"`  // mxsurvey: DNS queries sent
	Domains  int64            `json:"domains,omitempty"`  // mxsurvey: domains resolved
	Fetches  int64            `json:"fetches,omitempty"`  // mxsurvey: MTA-STS policy fetches started (sts_fetches)
	HTTPS    int64            `json:"https,omitempty"`    // mxsurvey: of those, fetches whose TLS handshake completed
	Groups   map[string]int64 `json:"groups,omitempty"`   // negotiated key exchange per probe
	Scan     *ScanFig         `json:"scan,omitempty"`     // mxsurvey's manifest figures
	Failures map[string]int64 `json:"failures,omitempty"` // zgrab2 status or zdns status other than success
}

func (t *ToolFig) rate() float64 {
	if t == nil {
		return nanv
	}
	return div(float64(t.Items), t.Proc.WallS)
}

func (t *ToolFig) cpuPer() float64 {
	if t == nil {
		return nanv
	}
	return div(t.Proc.CPUS(), float64(t.Items))
}

func (t *ToolFig) labPer() float64 {
	if t == nil {
		return nanv
	}
	return div(t.Proc.LabCPUS, float64(t.Items))
}

// domains is how many domains an mxsurvey run resolved (results written
// before Domains was recorded have it in the manifest's counts).
func (t *ToolFig) domains() int64 {
	if t.Domains == 0 && t.Scan != nil {
		return t.Scan.Counts["domains_resolved"]
	}
	return t.Domains
}

func (t *ToolFig) bytesPer() float64 {
	if t == nil {
		return nanv
	}
	return div(float64(t.OutBytes), float64(t.Items))
}

// benchField runs the field phase into work and returns its result.
func benchField(ctx context.Context, c config, work string) (res FieldResult) {
	res = FieldResult{Domains: c.fieldDomains, Conc: c.fieldConc, Started: time.Now().UTC(), Argv: map[string][]string{},
		Anchors: c.anchors, NoAnchors: c.noAnchors}
	defer func() { res.Ended = time.Now().UTC() }()
	fail := func(err error) bool {
		if err != nil {
			log.Printf("field: %v", err)
			res.Errors = append(res.Errors, err.Error())
			return true
		}
		return false
	}
	_ = os.RemoveAll(work)
	if fail(os.MkdirAll(work, 0o755)) {
		return res
	}
	n := c.fieldDomains
	if res.NoAnchors != "" {
		log.Printf("field: %s: zgrab2 and zdns are not measured", res.NoAnchors)
	}
	log.Printf("field: starting the proving ground (%d domains)", n)
	lab, argv, err := startLab(ctx, []string{c.bin}, n, "0", filepath.Join(work, "lab"), 120*time.Second, provingGround...)
	res.Argv["lab"] = argv
	if fail(err) {
		return res
	}
	defer func() {
		st := lab.stop()
		st.Argv = argv
		res.Lab = &st
	}()
	domainsCSV := filepath.Join(lab.Dir, "domains.csv")
	domainsTxt := filepath.Join(work, "domains.txt")
	if fail(domainList(domainsCSV, domainsTxt)) {
		return res
	}
	conc := fmt.Sprint(c.fieldConc)
	timeout := 10 * time.Minute
	tool := func(name string, argv []string, out string) (*ToolFig, error) {
		res.Argv[name] = argv
		log.Printf("field: %s", name)
		_ = os.RemoveAll(out)
		p, _, err := run(ctx, name, argv, filepath.Join(work, name+".log"), timeout, lab.pid())
		f := &ToolFig{Proc: p}
		return f, err
	}
	mxscan := func(name string, args ...string) (*ToolFig, error) {
		dir := filepath.Join(work, name)
		a := append(append([]string{c.bin, "scan", "-resolver", lab.DNS, "-mta-sts-port", fmt.Sprint(lab.STSPort),
			"-ehlo-name", "scanner.mxsurvey.test", "-rate", "0", "-dns-rate", "0", "-progress", "1s"}, args...), "-o", dir, domainsCSV)
		f, err := tool(name, a, dir)
		if err != nil {
			return f, err
		}
		s := ScanFig{Proc: f.Proc, Dir: dir}
		if err := readManifest(&s); err != nil {
			return f, err
		}
		f.Scan, f.Queries, f.Domains, f.Fetches = &s, s.Counts["dns_queries"], s.Counts["domains_resolved"], s.Counts["sts_fetches"]
		if f.Fetches > 0 {
			err = store.ReadAll(survey.PoliciesDir(dir), func(r *survey.PolicyRow) error {
				if r.STSFetched && r.STSTLSVersion != "" {
					f.HTTPS++
				}
				return nil
			})
		}
		return f, err
	}
	probeArgs := []string{"-allow", "127.0.0.0/8", "-port", fmt.Sprint(lab.Port), "-concurrency", conc,
		"-per-ip-concurrency", conc, "-ip-interval", "0", "-timeout", "30s", "-step-timeout", "10s"}
	mxprobe := func(name string, groups string) (*ToolFig, error) {
		f, err := mxscan(name, append(probeArgs, "-tls-groups", groups)...)
		if err != nil {
			return f, err
		}
		f.Items, f.OutBytes = f.Scan.Counts["probes"], f.Scan.ProbeBytes
		f.Groups = map[string]int64{}
		err = store.ReadAll(survey.ProbesDir(f.Scan.Dir), func(r *survey.ProbeRow) error {
			if r.TLSVersion != "" {
				f.OK++
				f.Groups[strings.ToLower(r.TLSGroup)]++
			}
			return nil
		})
		return f, err
	}
	targetsCSV := filepath.Join(work, "targets.csv")
	loopTargets := filepath.Join(work, "targets.txt")
	for r := range c.fieldRuns {
		if ctx.Err() != nil {
			break
		}
		log.Printf("field: round %d/%d", r+1, c.fieldRuns)
		var rd FieldRound
		if c.anchors != "" {
			out := filepath.Join(work, "zdns.jsonl")
			a := []string{filepath.Join(c.anchors, "zdns"), "mxlookup", "--ipv4-lookup", "--name-servers=" + lab.DNS,
				"--threads=" + conc, "-f", domainsTxt, "-o", out}
			f, err := tool("zdns", a, out)
			if !fail(err) && !fail(readZDNS(out, f)) {
				rd.ZDNS = f
			}
		}
		// No -allow: every lab address is special-purpose, so each target
		// (and each MTA-STS policy host) is recorded as blocked without a
		// connection. What is left is DNS: without the policy records, as
		// zdns asks, and with them, as a scan does by default.
		dnsOnly := func(name string, args ...string) (*ToolFig, error) {
			f, err := mxscan(name, append([]string{"-dns-concurrency", conc}, args...)...)
			if err != nil {
				return f, err
			}
			f.Items, f.OutBytes = f.Domains, f.Scan.MXBytes+duBytes(survey.PoliciesDir(f.Scan.Dir))+duBytes(survey.TLSADir(f.Scan.Dir))
			f.OK = f.Scan.DNS["ok"]
			return f, nil
		}
		f, err := dnsOnly("mxsurvey-dns-only", "-policies=false")
		if fail(err) {
			break
		}
		rd.DNSOnly = f
		if rd.DNSPol, err = dnsOnly("mxsurvey-dns-policies"); fail(err) {
			break
		}
		if r == 0 {
			res.Targets, err = zgrabTargets(filepath.Join(f.Scan.Dir, "mx"), targetsCSV)
			if fail(err) {
				break
			}
		}
		// zgrab2 between mxsurvey's two runs, so a drift in the machine's
		// load falls on both comparisons alike.
		if rd.Scan, err = mxprobe("mxsurvey", "default"); fail(err) {
			break
		}
		if c.anchors != "" {
			out := filepath.Join(work, "zgrab2.jsonl")
			a := []string{filepath.Join(c.anchors, "zgrab2"), "smtp", "-f", targetsCSV, "--senders=" + conc,
				"--port=" + fmt.Sprint(lab.Port), "--send-quit", "--server-rate-limit=1000000", "--blocklist-file=/dev/null", "-o", out}
			f, err := tool("zgrab2", a, out)
			if !fail(err) && !fail(readZGrab(out, f)) {
				rd.ZGrab = f
			}
		}
		if rd.ScanX, err = mxprobe("mxsurvey-x25519", "x25519"); fail(err) {
			break
		}
		if r == 0 {
			if _, err := writeTargets(rd.Scan.Scan.Dir, loopTargets); fail(err) {
				break
			}
		}
		rd.TLS, rd.TLSX = tlsLoops(ctx, c, work, loopTargets, c.fieldConc, rd.Scan.Items, "120s", lab.pid(), res.Argv, fail)
		res.Rounds = append(res.Rounds, rd)
	}
	return res
}

// domainList writes the domains of the lab's rank,domain CSV one per line,
// as zdns reads them.
func domainList(csv, txt string) error {
	in, err := os.Open(csv)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(txt)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		_, d, ok := strings.Cut(sc.Text(), ",")
		if !ok || d == "domain" {
			continue
		}
		fmt.Fprintln(w, d)
	}
	if err := sc.Err(); err != nil {
		out.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// zgrabTargets writes the "ip,mx_host" rows zgrab2 reads (its domain column
// becomes the SNI) from the mx rows of mxsurvey's DNS-only scan, so zgrab2
// is given exactly the targets mxsurvey probes.
func zgrabTargets(mxDir, path string) (int64, error) {
	seen := map[string]bool{}
	return writeRows(mxDir, path, func(r *survey.MXRow) string {
		k := r.IP + "," + r.MXHost
		if r.IP == "" || seen[k] {
			return ""
		}
		seen[k] = true
		return k
	})
}

// readZGrab counts zgrab2's output: a probe is ok when zgrab2 reports
// success with a TLS handshake logged; the key exchange is the server
// hello's.
func readZGrab(path string, f *ToolFig) error {
	f.Groups, f.Failures = map[string]int64{}, map[string]int64{}
	return readJSONLines(path, f, func(line []byte) error {
		var v struct {
			Data struct {
				SMTP struct {
					Status string `json:"status"`
					Result struct {
						TLS *struct {
							Log struct {
								Hello struct {
									KeyShare struct {
										Name string `json:"name"`
									} `json:"key_share"`
								} `json:"server_hello"`
							} `json:"handshake_log"`
						} `json:"tls"`
					} `json:"result"`
				} `json:"smtp"`
			} `json:"data"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			return err
		}
		s := v.Data.SMTP
		if s.Status == "success" && s.Result.TLS != nil {
			f.OK++
			f.Groups[strings.ToLower(s.Result.TLS.Log.Hello.KeyShare.Name)]++
		} else {
			f.Failures[s.Status]++
		}
		return nil
	})
}

// readZDNS counts zdns's output: a domain is ok when its lookup says NOERROR.
func readZDNS(path string, f *ToolFig) error {
	f.Failures = map[string]int64{}
	return readJSONLines(path, f, func(line []byte) error {
		var v struct {
			Results struct {
				MX struct {
					Status string `json:"status"`
				} `json:"MXLOOKUP"`
			} `json:"results"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			return err
		}
		if v.Results.MX.Status == "NOERROR" {
			f.OK++
		} else {
			f.Failures[v.Results.MX.Status]++
		}
		return nil
	})
}

// readJSONLines counts the lines of path into f.Items, its size into
// f.OutBytes, and hands each line to each.
func readJSONLines(path string, f *ToolFig, each func([]byte) error) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	if st, err := in.Stat(); err == nil {
		f.OutBytes = st.Size()
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		f.Items++
		if err := each(sc.Bytes()); err != nil {
			return fmt.Errorf("%s line %d: %w", path, f.Items, err)
		}
	}
	return sc.Err()
}
