package pipeline

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"
)

// Config is everything one scan needs. The command fills it from flags;
// tests and other programs build it directly. Zero fields take the defaults
// below and those of the probe's and the resolver's configurations; a zero
// rate or interval means none.
//
// The fields tagged `option`, here and in Resolve and Probe, are the scan's
// options in its manifest, under that name and with their effective values
// (options, in manifest.go).
type Config struct {
	Input  string         `option:"input"` // domain list path, "-" for stdin
	Format domains.Format `option:"format"`
	Out    string
	Resume bool
	// Checkpoint is how often open parts are committed: what a kill -9
	// can lose at most.
	Checkpoint time.Duration `option:"checkpoint"`
	Shard      Shard         `option:"shard"`

	// Resolve configures the resolver; its Limiter is built from DNSRate
	// and must be left nil.
	Resolve        resolve.Config
	DNSConcurrency int     `option:"dns_concurrency"` // domains resolved at once
	DNSRate        float64 `option:"dns_rate"`        // queries per second, 0 = unlimited
	PTR            bool    `option:"ptr"`

	// Probe configures the prober. Its Dial may be replaced: tests use it
	// to see every connection the scan attempts.
	Probe            probe.Config
	Concurrency      int           `option:"concurrency"` // probes in flight
	Rate             float64       `option:"rate"`        // new connections per second, 0 = unlimited
	PerIPConcurrency int           `option:"per_ip_concurrency"`
	IPInterval       time.Duration `option:"ip_interval"` // pause between two connections to one address
	IPv6             bool          `option:"ipv6"`

	// Policies adds the transport security policies (policies.go): DNSSEC
	// statuses (the DO bit on every query), TLSA per MX host, MTA-STS and
	// TLS-RPT records per domain, and the MTA-STS policy fetch, configured
	// by STS (its port; its deadlines and TLS offer are Probe's, its
	// connections count against Rate, its addresses pass the same guard).
	Policies bool `option:"policies"`
	STS      stsfetch.Config

	Allow []netip.Prefix `option:"allow"`                 // special-purpose ranges that may be contacted
	Block []netip.Prefix `option:"blocklist_entries,len"` // never contacted; the manifest counts them

	Progress      io.Writer // nil = no progress lines
	ProgressEvery time.Duration
	Args          []string // recorded in the manifest
}

// Defaults for zero Config fields.
const (
	DefaultDNSConcurrency   = 200
	DefaultConcurrency      = 1000
	DefaultPerIPConcurrency = 1
	DefaultCheckpoint       = 30 * time.Second
	DefaultProgressEvery    = 5 * time.Second
)

// Shard selects the K-th of N disjoint slices of the input by domain hash,
// so N machines (or runs) can split one list without coordination.
type Shard struct{ K, N int }

func (s Shard) String() string {
	if s.N <= 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

// ParseShard parses "K/N" with 1 <= K <= N.
func ParseShard(v string) (Shard, error) {
	var s Shard
	if _, err := fmt.Sscanf(v, "%d/%d", &s.K, &s.N); err != nil || fmt.Sprintf("%d/%d", s.K, s.N) != v {
		return Shard{}, fmt.Errorf("-shard %q: want K/N, e.g. 1/4", v)
	}
	if s.N < 1 || s.K < 1 || s.K > s.N {
		return Shard{}, fmt.Errorf("-shard %q: K must be between 1 and N", v)
	}
	return s, nil
}

func (s Shard) includes(domain string) bool {
	if s.N <= 1 {
		return true
	}
	return int(fnv64(domain)%uint64(s.N)) == s.K-1
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// ParseTLSGroups parses a comma-separated list of key exchange groups, in
// the order offered, each in any spelling of the vocabulary
// (survey.LookupTLSGroup: "X25519,P-256", "x25519,p256", "secp256r1");
// "default" or "" keeps Go's preference (X25519MLKEM768 first).
func ParseTLSGroups(v string) ([]tls.CurveID, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "default") {
		return nil, nil
	}
	var out []tls.CurveID
	for _, name := range strings.Split(v, ",") {
		g, ok := survey.LookupTLSGroup(name)
		if !ok {
			var known []string
			for _, g := range survey.TLSGroups() {
				known = append(known, g.Name)
			}
			return nil, fmt.Errorf("-tls-groups: unknown group %q (known: %s; see docs/schema.md)", strings.TrimSpace(name), strings.Join(known, ", "))
		}
		out = append(out, g.ID)
	}
	return out, nil
}

func (c *Config) setDefaults() {
	if c.Format == "" {
		c.Format = domains.FormatAuto
	}
	if c.DNSConcurrency == 0 {
		c.DNSConcurrency = DefaultDNSConcurrency
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PerIPConcurrency == 0 {
		c.PerIPConcurrency = DefaultPerIPConcurrency
	}
	if c.Checkpoint == 0 {
		c.Checkpoint = DefaultCheckpoint
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	c.Resolve = c.Resolve.WithDefaults()
	c.Probe = c.Probe.WithDefaults()
	c.STS = c.STS.WithDefaults()
}

// ErrConfig is wrapped by the errors of Run that reject its Config, before
// any traffic is sent.
var ErrConfig = errors.New("invalid scan configuration")

// validate rejects impossible settings before any traffic is sent.
func (c *Config) validate() error {
	if err := c.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (c *Config) check() error {
	switch {
	case c.Input == "":
		return fmt.Errorf("no input: give a domain list file, or - for stdin")
	case c.Out == "":
		return fmt.Errorf("no output directory: give -o DIR")
	case c.Probe.EHLOName == "":
		return fmt.Errorf("-ehlo-name is empty: name the scanning host (a name whose PTR and web page explain the scan)")
	case c.Concurrency < 0, c.DNSConcurrency < 0, c.PerIPConcurrency < 0:
		return fmt.Errorf("concurrency flags must be positive")
	case c.Rate < 0 || c.DNSRate < 0:
		return fmt.Errorf("rates must be zero (unlimited) or positive")
	case c.Checkpoint < 0 || c.IPInterval < 0 || c.Probe.Timeout < 0 || c.Probe.StepTimeout < 0 || c.Resolve.Timeout < 0:
		return fmt.Errorf("durations must not be negative")
	case c.Probe.Port < 1 || c.Probe.Port > 65535:
		return fmt.Errorf("-port %d: want 1-65535", c.Probe.Port)
	case c.STS.Port < 1 || c.STS.Port > 65535:
		return fmt.Errorf("-mta-sts-port %d: want 1-65535", c.STS.Port)
	case c.Resolve.Retries < 0:
		return fmt.Errorf("-dns-retries must not be negative")
	case c.Resolve.Limiter != nil:
		return fmt.Errorf("Resolve.Limiter is set: give DNSRate, which the manifest records")
	}
	return nil
}
