// Package cluster spreads one scan over many processes on many machines
// through NATS JetStream, and gives the dataset a scan on one machine
// gives: the same rows, every domain and target once, and the politeness
// limits of the scan held across all workers together (docs/distributed.md
// states the guarantees and proves them).
//
// The coordinator ("mxsurvey scan -nats URL", Coordinate) holds the
// pipeline's Scan: the input, what is done, target deduplication, the
// per-address scheduler, the writers and the manifest. Workers ("mxsurvey
// worker", Work) hold the pipeline's Stages: they resolve batches of
// domains and probe the targets the coordinator grants them. So every
// decision that needs the whole scan in view is made in one place, by the
// code that makes it in a local scan, and workers only execute:
//
//   - Domain batches go through a JetStream work queue: any worker takes
//     any batch, publishes its rows (durably, to the results stream) and only
//     then acknowledges it; a batch whose worker died is delivered again
//     after its ack wait.
//   - Probes are granted on request: a worker with free slots asks for
//     targets, and the coordinator answers with targets whose address is free
//     and rested, each under a lease that bounds how long the connection can
//     live. No queue stands between them, so no grant can go stale in one,
//     and a lease needs no clock shared between machines.
//   - Rows come back through the results stream; the coordinator writes
//     them with the Scan's writers, drops repeats, and acknowledges a message
//     only once the Parquet part holding its rows is committed.
//
// Every name lives under a prefix (-nats-prefix, default "mxsurvey"), so
// NATS permissions can confine a worker to its subjects.
package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// DefaultPrefix names the streams, bucket and subjects of mxsurvey.
const DefaultPrefix = "mxsurvey"

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// names are the NATS names of one prefix and, once set, one scan.
type names struct {
	prefix string
	scan   string
}

func (n names) domainsStream() string { return n.prefix + "_domains" }
func (n names) resultsStream() string { return n.prefix + "_results" }
func (n names) bucket() string        { return n.prefix + "_scans" }
func (n names) scanSubject(s string) string {
	return n.prefix + ".scan." + n.scan + "." + s
}
func (n names) domains() string      { return n.scanSubject("domains") }
func (n names) mxResults() string    { return n.scanSubject("results.mx") }
func (n names) probeResults() string { return n.scanSubject("results.probes") }
func (n names) want() string         { return n.scanSubject("want") }
func (n names) tokens() string       { return n.scanSubject("tokens") }
func (n names) connTokens() string   { return n.scanSubject("conntokens") }
func (n names) heartbeats() string   { return n.prefix + ".workers.*" }
func (n names) heartbeat(w string) string {
	return n.prefix + ".workers." + w
}
func (n names) domainsConsumer() string { return "domains_" + n.scan }
func (n names) mxConsumer() string      { return "results_mx_" + n.scan }
func (n names) probesConsumer() string  { return "results_probes_" + n.scan }

// Spec is a scan as its workers see it: the value of its key in the scans
// bucket. It carries the scan-wide options (what a probe sends, how the DNS
// is asked, the rates); the machine's own options (resolvers, concurrency,
// its allow list and blocklist) stay with each worker.
type Spec struct {
	Scan          string `json:"scan"`
	Run           string `json:"run"` // the coordinator process: new after a -resume
	Tool          string `json:"tool"`
	ToolVersion   string `json:"tool_version"`
	SchemaVersion int    `json:"schema_version"`

	Stages  pipeline.StageConfig `json:"stages"`  // Guard is the worker's own
	Resolve resolve.Config       `json:"resolve"` // Servers are the worker's own
	// DNSRate > 0: every DNS query spends a token leased from the
	// coordinator, which holds the scan's one limiter. Rate > 0: so does
	// every connection of a policy fetch (the probes' connections are
	// granted by the coordinator).
	DNSRate float64 `json:"dns_rate"`
	Rate    float64 `json:"rate"`
	// StartWindow: a granted probe connects within this of the grant, or
	// not at all.
	StartWindow time.Duration `json:"start_window"`
	// AckWait: a domain batch held this long without word from its worker
	// goes to another worker.
	AckWait time.Duration `json:"ack_wait"`
	Batch   int           `json:"batch"` // domains per batch
}

// compatible says why a worker of this build must refuse the scan, or "".
func (s *Spec) compatible() string {
	if s.Tool != survey.Tool || s.ToolVersion != survey.Version || s.SchemaVersion != survey.SchemaVersion {
		return fmt.Sprintf("scan %s is run by %s %s (schema %d), this worker is %s %s (schema %d): run the same version on both sides",
			s.Scan, s.Tool, s.ToolVersion, s.SchemaVersion, survey.Tool, survey.Version, survey.SchemaVersion)
	}
	return ""
}

// batch is a message of the domains stream.
type batch struct {
	Tasks []pipeline.Task `json:"tasks"`
}

// domainResult is a message of the mx results subject: the rows of every
// domain of (part of) one batch, each domain's rows together.
type domainResult struct {
	Worker  string          `json:"worker"`
	Domains []pipeline.Rows `json:"domains"`
}

// want is a worker's request for up to N targets to probe.
type want struct {
	Worker string `json:"worker"`
	N      int    `json:"n"`
}

// grant answers a want. Held is how long the coordinator held the request
// before answering (by its clock): the worker connects only within
// StartWindow of its send time plus Held, which is no later than
// StartWindow after the grant, whatever the network did meanwhile.
type grant struct {
	Held   time.Duration `json:"held"`
	Leases []lease       `json:"leases"`
}

type lease struct {
	ID     string          `json:"id"`
	Target pipeline.Target `json:"target"`
}

// probeResult is a message of the probe results subject: the row of a
// leased target, or none when the worker gives the lease back unused.
type probeResult struct {
	Worker string           `json:"worker"`
	Lease  string           `json:"lease"`
	Target pipeline.Target  `json:"target"`
	Row    *survey.ProbeRow `json:"row,omitempty"`
}

// tokenRequest asks the coordinator for N DNS query tokens.
type tokenRequest struct {
	N int `json:"n"`
}

// tokenGrant answers a tokenRequest: N tokens, usable from Wait after the
// reply arrives until Valid after the request was sent (durations, so no
// shared clock is needed).
type tokenGrant struct {
	N     int           `json:"n"`
	Wait  time.Duration `json:"wait"`
	Valid time.Duration `json:"valid"`
}

// heartbeat is a worker's periodic word: who it is, and for each scan it
// knows, whether it works on it (and its DNS counters) or refused it.
type heartbeat struct {
	Worker         string               `json:"worker"`
	Host           string               `json:"host"`
	ToolVersion    string               `json:"tool_version"`
	SchemaVersion  int                  `json:"schema_version"`
	Concurrency    int                  `json:"concurrency"`
	DNSConcurrency int                  `json:"dns_concurrency"`
	Scans          map[string]scanState `json:"scans"`
}

type scanState struct {
	Refused string        `json:"refused,omitempty"`
	DNS     resolve.Stats `json:"dns"`
	DNSSEC  string        `json:"dnssec,omitempty"` // pipeline.DNSSECOption of the worker's resolvers
}

// Messages are JSON compressed with zstd: rows repeat their column names
// and much of their text, and a domain with 64 MX hosts of 64 addresses
// each must still fit NATS's payload limit.
//
// The encoder's window is a message's size, not zstd's default 8 MiB: with
// one history per core, the default held 32 MB of a coordinator's 99 MB
// heap (100,000 lab domains).
var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1<<20))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(64<<20), zstd.WithDecoderConcurrency(0))
)

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding message: %w", err)
	}
	return encoder.EncodeAll(b, nil), nil
}

// decode reads a message from any publisher: its size is bounded by NATS,
// its decompressed size by the decoder.
func decode(b []byte, v any) error {
	raw, err := decoder.DecodeAll(b, nil)
	if err != nil {
		return fmt.Errorf("decompressing message: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("decoding message: %w", err)
	}
	return nil
}

// ErrNATS is wrapped by every failure to use the NATS server at the start
// (unreachable, no JetStream, refused credentials): the command exits 2
// before any DNS or SMTP traffic.
var ErrNATS = errors.New("NATS unusable")

// Redact is a NATS URL list without passwords or tokens, for logs and the
// manifest.
func Redact(urls string) string {
	var out []byte
	for i, u := range splitURLs(urls) {
		if i > 0 {
			out = append(out, ',')
		}
		if p, err := url.Parse(u); err == nil && p.User != nil {
			p.User = url.User("REDACTED")
			u = p.String()
		}
		out = append(out, u...)
	}
	return string(out)
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range bytes.Split([]byte(s), []byte(",")) {
		if u = bytes.TrimSpace(u); len(u) > 0 {
			out = append(out, string(u))
		}
	}
	return out
}
