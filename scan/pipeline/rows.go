package pipeline

import (
	"net/netip"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// Rows are the rows one piece of work produced, by table: what the writers
// commit together per table (all rows of one domain in one part), and what
// a cluster worker sends its coordinator. A table added to the dataset is a
// field here and a line in newSink.
//
// A domain's Rows hold its mx rows, its policies row and the tlsa row of
// each of its MX hosts (policies on); the Scan writes a host's tlsa row
// once, with the first domain that has it (newSink commits it no earlier
// than that domain's mx rows). The Rows of a Task.TLSAHost hold only that
// host's tlsa row.
type Rows struct {
	MX       []survey.MXRow     `json:"mx,omitempty"`
	Policies []survey.PolicyRow `json:"policies,omitempty"`
	TLSA     []survey.TLSARow   `json:"tlsa,omitempty"`
	Probes   []survey.ProbeRow  `json:"probes,omitempty"`
}

// Task is one domain to resolve, with what the Scan already holds of it;
// or, with TLSAHost set, one MX host whose TLSA records to look up.
type Task struct {
	Entry domains.Entry `json:"entry"`
	// SkipPolicies: an earlier run committed the domain's policies row
	// (without its mx rows): its policy records are not asked again.
	SkipPolicies bool `json:"skip_policies,omitempty"`
	// TLSAHost is an MX host that committed mx rows of an earlier run
	// reference and whose tlsa row that run did not commit (killed between
	// the two commits): the task is its TLSA lookup, not a domain.
	TLSAHost string `json:"tlsa_host,omitempty"`
}

// Key names the task among those of a scan: its domain, or its host.
func (t Task) Key() string {
	if t.TLSAHost != "" {
		return tlsaKey(t.TLSAHost)
	}
	return t.Entry.Domain
}

// Key is the Key of the Task these rows answer ("" for none).
func (r *Rows) Key() string {
	switch {
	case len(r.MX) > 0:
		return r.MX[0].Domain
	case len(r.TLSA) == 1:
		return tlsaKey(r.TLSA[0].MXHost)
	}
	return ""
}

// Target is one (address, MX host) to probe once per scan, however many
// domains lead to it: the join key of the two tables.
type Target struct {
	IP     netip.Addr `json:"ip"`
	MXHost string     `json:"mx_host"`
}

// Key is the target's survey.TargetKey.
func (t Target) Key() string { return survey.TargetKey(t.IP.String(), t.MXHost) }

// TargetsOf lists the targets mx rows reference, in row order: what a
// domain's resolution adds to a scan, and what a resume finds in committed
// rows.
func TargetsOf(rows []survey.MXRow) []Target {
	var targets []Target
	for _, r := range rows {
		if r.IP == "" {
			continue
		}
		if ip, err := netip.ParseAddr(r.IP); err == nil {
			targets = append(targets, Target{IP: ip, MXHost: r.MXHost})
		}
	}
	return targets
}

// mxRows maps the resolution of one domain to its mx rows, which are
// committed together: one per (MX host, address), one per MX host without
// an address, and one for the domain when it has no MX host.
func mxRows(e domains.Entry, d resolve.Domain, at time.Time) []survey.MXRow {
	base := survey.MXRow{Domain: e.Domain, Rank: e.Rank, Input: e.Input, DNSStatus: d.Status, DNSError: d.Error,
		ImplicitMX: d.ImplicitMX, CNAMEs: d.CNAMEs, ResolvedAt: at, MXDNSSEC: d.DNSSEC}
	n := 0
	for _, h := range d.Hosts {
		n += max(len(h.Addrs), 1)
	}
	rows := make([]survey.MXRow, 0, max(n, 1)) // grown by append, they were 2% of all the scanner allocated
	for _, h := range d.Hosts {
		hr := base
		hr.MXHost, hr.MXPreference, hr.MXHostStatus, hr.MXHostError = h.Name, int32(h.Preference), h.Status, h.Error
		hr.MXHostCNAMEs, hr.AddrDNSSEC = h.CNAMEs, h.DNSSECA
		if len(h.Addrs) == 0 {
			rows = append(rows, hr)
			continue
		}
		for _, a := range h.Addrs {
			ar := hr
			ar.IP = a.String()
			ar.IPVersion = 4
			if a.Is6() && !a.Is4In6() {
				ar.IPVersion, ar.AddrDNSSEC = 6, h.DNSSECAAAA
			}
			rows = append(rows, ar)
		}
	}
	if len(rows) == 0 {
		rows = append(rows, base)
	}
	return rows
}

// invalidRow is the mx row of an input line that is not a domain: the line
// stands for the domain, and the reason is the DNS error.
func invalidRow(e domains.Entry, at time.Time) survey.MXRow {
	return survey.MXRow{Domain: e.Input, Rank: e.Rank, Input: e.Input, DNSStatus: survey.DNSError,
		DNSError: e.Err, ResolvedAt: at}
}

// skippedRow is the probe row of a target that is not contacted.
func skippedRow(t Target, port int, class, reason string) survey.ProbeRow {
	return survey.ProbeRow{IP: t.IP.String(), Port: int32(port), MXHost: t.MXHost, StartedAt: time.Now().UTC(),
		Outcome: survey.OutcomeSkipped, ErrorClass: class, Error: reason}
}

// invalidKey keys an invalid input line by its text, apart from every
// valid domain name.
func invalidKey(input string) string { return "\x00invalid:" + input }

// entryKey is what an input entry is deduplicated and sharded by: its
// domain, or its input line when it is not a valid domain.
func entryKey(e domains.Entry) string {
	if e.Err != "" {
		return invalidKey(e.Input)
	}
	return e.Domain
}

// tlsaKey keys a Task.TLSAHost apart from every domain.
func tlsaKey(host string) string { return "\x00tlsa:" + host }
