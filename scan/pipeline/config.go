package pipeline

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Config is everything one scan needs. Command fills it from flags; tests
// build it directly.
type Config struct {
	Input  string // domain list path, "-" for stdin
	Format datasets.Format
	Out    string
	Resume bool
	// Checkpoint is how often open parts are committed: what a kill -9
	// can lose at most.
	Checkpoint time.Duration
	Shard      Shard

	Resolvers      []string
	DNSTimeout     time.Duration
	DNSRetries     int
	DNSConcurrency int
	DNSRate        float64 // queries per second, 0 = unlimited
	PTR            bool

	Concurrency      int     // probes in flight
	Rate             float64 // new connections per second, 0 = unlimited
	PerIPConcurrency int
	IPInterval       time.Duration
	Port             int
	EHLOName         string
	ProbeTimeout     time.Duration
	StepTimeout      time.Duration
	IPv6             bool
	TLSGroups        []tls.CurveID // nil = Go's default preference

	Allow []netip.Prefix
	Block []netip.Prefix

	// Dial replaces the prober's dialer; tests use it to see every
	// connection the scan attempts.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	Progress      io.Writer // nil = no progress lines
	ProgressEvery time.Duration
	Args          []string // recorded in the manifest
}

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
		c.Format = datasets.FormatAuto
	}
	if c.DNSTimeout == 0 {
		c.DNSTimeout = 3 * time.Second
	}
	if c.DNSConcurrency == 0 {
		c.DNSConcurrency = 200
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1000
	}
	if c.PerIPConcurrency == 0 {
		c.PerIPConcurrency = 1
	}
	if c.Port == 0 {
		c.Port = 25
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 30 * time.Second
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = 10 * time.Second
	}
	if c.Checkpoint == 0 {
		c.Checkpoint = 30 * time.Second
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 5 * time.Second
	}
}

// validate rejects impossible settings before any traffic is sent.
func (c *Config) validate() error {
	switch {
	case c.Input == "":
		return fmt.Errorf("no input: give a domain list file, or - for stdin")
	case c.Out == "":
		return fmt.Errorf("no output directory: give -o DIR")
	case c.EHLOName == "":
		return fmt.Errorf("-ehlo-name is empty: name the scanning host (a name whose PTR and web page explain the scan)")
	case c.Concurrency < 0, c.DNSConcurrency < 0, c.PerIPConcurrency < 0:
		return fmt.Errorf("concurrency flags must be positive")
	case c.Rate < 0 || c.DNSRate < 0:
		return fmt.Errorf("rates must be zero (unlimited) or positive")
	case c.Checkpoint < 0 || c.IPInterval < 0 || c.ProbeTimeout < 0 || c.StepTimeout < 0 || c.DNSTimeout < 0:
		return fmt.Errorf("durations must not be negative")
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("-port %d: want 1-65535", c.Port)
	case c.DNSRetries < 0:
		return fmt.Errorf("-dns-retries must not be negative")
	}
	return nil
}
