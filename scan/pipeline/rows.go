package pipeline

import (
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// mxRows maps the resolution of one domain to its mx rows, which are
// committed together: one per (MX host, address), one per MX host without
// an address, and one for the domain when it has no MX host. It returns the
// targets the rows reference, in row order.
func mxRows(e domains.Entry, d resolve.Domain, at time.Time) ([]survey.MXRow, []target) {
	base := survey.MXRow{Domain: e.Domain, Rank: e.Rank, Input: e.Input, DNSStatus: d.Status, DNSError: d.Error,
		ImplicitMX: d.ImplicitMX, CNAMEs: d.CNAMEs, ResolvedAt: at, MXDNSSEC: d.DNSSEC}
	var rows []survey.MXRow
	var targets []target
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
			targets = append(targets, target{ip: a, mxHost: h.Name})
		}
	}
	if len(rows) == 0 {
		rows = append(rows, base)
	}
	return rows, targets
}

// invalidRow is the mx row of an input line that is not a domain: the line
// stands for the domain, and the reason is the DNS error.
func invalidRow(e domains.Entry, at time.Time) survey.MXRow {
	return survey.MXRow{Domain: e.Input, Rank: e.Rank, Input: e.Input, DNSStatus: survey.DNSError,
		DNSError: e.Err, ResolvedAt: at}
}

// skippedRow is the probe row of a target that is not contacted.
func skippedRow(t target, port int, class, reason string) survey.ProbeRow {
	return survey.ProbeRow{IP: t.ip.String(), Port: int32(port), MXHost: t.mxHost, StartedAt: time.Now().UTC(),
		Outcome: survey.OutcomeSkipped, ErrorClass: class, Error: reason}
}

// invalidKey keys an invalid input line by its text, apart from every
// valid domain name.
func invalidKey(input string) string { return "\x00invalid:" + input }
