package analyze

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"
	"unicode/utf8"
)

// A line is one figure as both reports show it: the count, its denominator
// named, and the share.
type line struct {
	Key, Label string
	N, D       int64
	Of         string // denominator key, "" for totals
	Text       string // "N of D (P%)"
}

func Share(n, d int64) string {
	if d == 0 {
		return fmt.Sprintf("%d of 0 (n/a)", n)
	}
	return fmt.Sprintf("%d of %d (%.1f%%)", n, d, 100*float64(n)/float64(d))
}

// notMeasured stands for a figure the scan did not measure.
const notMeasured = "not measured"

func figureLines(section string, figs []figure, vals map[string]int64) []line {
	out := make([]line, 0, len(figs))
	for _, f := range figs {
		n, ok := vals[f.Key]
		l := line{Key: section + "." + f.Key, Label: f.Label, N: n}
		if f.Of >= 0 {
			l.Of = section + "." + figs[f.Of].Key
		}
		switch {
		case !ok && f.Needs > measuredBasics:
			l.Text = notMeasured
		case f.Of >= 0:
			l.D = vals[figs[f.Of].Key]
			l.Text = Share(l.N, l.D)
		default:
			l.Text = fmt.Sprint(l.N)
		}
		out = append(out, l)
	}
	return out
}

func headlineLines(s *Summary) []line {
	all := figureLines("hosts", hostFigures[:], s.Hosts)
	out := make([]line, 0, len(headline))
	for _, i := range headline {
		out = append(out, all[i])
	}
	return out
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

type topView struct {
	Name, Title, Of string
	List            TopList
	Rows            []topRow
	Chart           chart
}

type topRow struct {
	Rank  int
	Name  string
	Share string
}

func topViews(s *Summary) []topView {
	var out []topView
	for _, t := range topDefs {
		tl := s.Top[t.Name]
		v := topView{Name: t.Name, Title: t.Title, Of: t.Of, List: tl}
		var labels []string
		var vals []int64
		for i, e := range tl.Entries {
			v.Rows = append(v.Rows, topRow{i + 1, e.Name, Share(e.Count, tl.Total)})
			labels = append(labels, e.Name)
			vals = append(vals, e.Count)
		}
		v.Chart = newChart(t.Title, labels, vals, tl.Total)
		out = append(out, v)
	}
	return out
}

type compareRow struct {
	Key, Old, New, Change string
}

func pct(n, d int64) float64 { return 100 * float64(n) / float64(d) }

func compareLines(section string, figs []figure, old, cur map[string]int64) []compareRow {
	var out []compareRow
	for _, f := range figs {
		r := compareRow{Key: section + "." + f.Key}
		on, ook := old[f.Key]
		nn, nok := cur[f.Key]
		switch {
		case !ook && !nok && f.Needs > measuredBasics:
			continue // measured by neither scan
		case !nok && f.Needs > measuredBasics:
			r.New, r.Change = notMeasured, "unknown"
			if ook {
				r.Old = fmt.Sprint(on)
			}
		case f.Of < 0:
			r.New = fmt.Sprint(nn)
			if ook {
				r.Old = fmt.Sprint(on)
				r.Change = fmt.Sprintf("%+d", nn-on)
			}
		default:
			of := figs[f.Of].Key
			od, odok := old[of]
			nd := cur[of]
			r.New = Share(nn, nd)
			if ook && odok {
				r.Old = Share(on, od)
				r.Change = fmt.Sprintf("%+d", nn-on)
				if od > 0 && nd > 0 {
					r.Change += fmt.Sprintf(" (%+.1f pp)", pct(nn, nd)-pct(on, od))
				}
			}
		}
		if r.Old == "" {
			r.Old, r.Change = "unknown", "unknown"
		}
		out = append(out, r)
	}
	return out
}

func compareTopRows(c *Comparison) map[string][]compareRow {
	out := map[string][]compareRow{}
	str := func(p *int64) string {
		if p == nil {
			return "unknown"
		}
		return fmt.Sprint(*p)
	}
	for _, t := range topDefs {
		for _, e := range ranked(topUnionForOrder(c.Top[t.Name])) {
			d := c.Top[t.Name][e.Name]
			ch := "unknown"
			if d.Delta != nil {
				ch = fmt.Sprintf("%+d", *d.Delta)
			}
			out[t.Name] = append(out[t.Name], compareRow{Key: e.Name, Old: str(d.Old), New: str(d.New), Change: ch})
		}
	}
	return out
}

// topUnionForOrder orders compared names by their newer count.
func topUnionForOrder(m map[string]Delta) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, d := range m {
		if d.New != nil {
			out[k] = *d.New
		} else {
			out[k] = -1
		}
	}
	return out
}

type reportData struct {
	S         *Summary
	Headline  []line
	HeadChart chart
	Policy    policyView
	Hosts     []line
	Domains   []line
	Tops      []topView
	Compare   *compareView
}

// policyView is the report's answer to "would a strict sender deliver?":
// of the domains that ask for authenticated delivery, how many an honouring
// sender could deliver to, and the RFC 8460 result types of the failures.
type policyView struct {
	Measured, DNSSEC bool
	DANE, STS        []line // the funnel of each mechanism
	TLSRPT           line
	Results          []line // tlsrpt_results, each of their sum
	ResultsTotal     int64
	Chart            chart
}

func buildPolicy(s *Summary) policyView {
	var v policyView
	_, v.Measured = s.Domains["mta_sts_record"]
	v.DNSSEC = s.TLSRPTResults != nil
	if !v.Measured {
		return v
	}
	doms := figureLines("domains", domainFigures[:], s.Domains)
	for _, i := range []int{dMXSecure, dDANEProtected, dDANEDeliverable} {
		v.DANE = append(v.DANE, doms[i])
	}
	for _, i := range []int{dMTASTSRecord, dMTASTSPolicyOK, dMTASTSEnforce, dMTASTSDeliverable} {
		v.STS = append(v.STS, doms[i])
	}
	v.TLSRPT = doms[dTLSRPTRecord]
	if !v.DNSSEC {
		return v
	}
	for _, n := range s.TLSRPTResults {
		v.ResultsTotal += n
	}
	var labels []string
	var vals []int64
	for _, f := range resultFigures() {
		n := s.TLSRPTResults[f.Key]
		v.Results = append(v.Results, line{Key: f.Key, Label: f.Label, N: n, D: v.ResultsTotal, Text: Share(n, v.ResultsTotal)})
		if n > 0 {
			labels = append(labels, f.Key)
			vals = append(vals, n)
		}
	}
	v.Chart = newChart("Why a strict sender would not deliver (RFC 8460 result types)", labels, vals, v.ResultsTotal)
	return v
}

// Texts of the policy section, shared by both reports.
const (
	policyIntro = "A domain asks senders to authenticate its mail servers with DANE (TLSA records, DNSSEC-signed) " +
		"or MTA-STS (a policy fetched over HTTPS). A sender that honours the request delivers only to an MX host " +
		"whose certificate passes; when none passes, the domain gets no mail from it. MTA-STS in mode testing " +
		"only asks for reports: those domains receive mail anyway."
	policyNotMeasured = "Not measured: the scan has no tlsa and policies tables (a schema-1 scan, or one run with -policies=false)."
	policyNoDNSSEC    = "DANE and the result types are not measured: the scan's resolver was not trusted for DNSSEC (manifest dnssec)."
	policyResults     = "Why the others would not: the RFC 8460 result type a sender would report, one per failing MX host " +
		"of a domain with DANE or an MTA-STS policy in mode enforce or testing (tlsrpt_results)."
)

type compareView struct {
	Old, New ScanInfo
	Hosts    []compareRow
	Domains  []compareRow
	Results  []compareRow // tlsrpt_results; empty when neither scan measured them
	Top      []compareTop
}

type compareTop struct {
	Title string
	Rows  []compareRow
}

func buildReport(s *Summary) reportData {
	d := reportData{
		S:        s,
		Headline: headlineLines(s),
		Hosts:    figureLines("hosts", hostFigures[:], s.Hosts),
		Domains:  figureLines("domains", domainFigures[:], s.Domains),
		Tops:     topViews(s),
		Policy:   buildPolicy(s),
	}
	var labels []string
	var vals []int64
	for _, l := range d.Headline {
		labels = append(labels, l.Label)
		vals = append(vals, l.N)
	}
	d.HeadChart = newChart("Certificate names, of hosts.with_cert", labels, vals, s.Hosts["with_cert"])
	if c := s.Comparison; c != nil && c.old != nil {
		cv := &compareView{
			Old: c.Old, New: c.New,
			Hosts:   compareLines("hosts", hostFigures[:], c.old.Hosts, s.Hosts),
			Domains: compareLines("domains", domainFigures[:], c.old.Domains, s.Domains),
			Results: compareLines("tlsrpt_results", resultFigures(), c.old.TLSRPTResults, s.TLSRPTResults),
		}
		rows := compareTopRows(c)
		for _, t := range topDefs {
			cv.Top = append(cv.Top, compareTop{t.Title, rows[t.Name]})
		}
		d.Compare = cv
	}
	return d
}

// mdEscape neutralises Markdown and inline HTML in server-sent text, since
// many Markdown renderers pass raw HTML through.
var mdEscape = strings.NewReplacer(
	"&", "&amp;", "<", "&lt;", ">", "&gt;", "|", `\|`, `\`, `\\`, "`", "\\`",
	"*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "\n", " ", "\r", " ",
)

func md(s string) string { return mdEscape.Replace(shorten(s, 100)) }

func markdownReport(s *Summary) string {
	d := buildReport(s)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# mxsurvey report\n\n")
	p("Scan: tool %s, schema %d, started %s, ended %s, status %s.\n\n",
		md(orDash(s.Scan.ToolVersion)), s.Scan.SchemaVersion, orDash(s.Scan.Started), orDash(s.Scan.Ended), md(orDash(s.Scan.Status)))
	p("Every share is \"N of D (P%%)\"; the key of D is given beside it. Definitions: docs/statistics.md.\n\n")
	p("## Which name does the certificate carry?\n\n")
	p("Of %d hosts with a parsed certificate (hosts.with_cert):\n\n", s.Hosts["with_cert"])
	p("| Certificate matches | Hosts | Denominator |\n|---|---|---|\n")
	for _, l := range d.Headline {
		p("| %s | %s | %s |\n", l.Label, l.Text, l.Of)
	}
	pv := d.Policy
	p("\n## Would a strict sender deliver?\n\n%s\n\n", policyIntro)
	switch {
	case !pv.Measured:
		p("%s\n", policyNotMeasured)
	default:
		p("| Asked for | Key | Domains | Denominator |\n|---|---|---|---|\n")
		for _, l := range append(append(pv.DANE, pv.STS...), pv.TLSRPT) {
			p("| %s | %s | %s | %s |\n", l.Label, l.Key, l.Text, orDash(l.Of))
		}
		if !pv.DNSSEC {
			p("\n%s\n", policyNoDNSSEC)
			break
		}
		p("\n%s Of %d failing MX hosts:\n\n| Result type | Meaning | MX hosts |\n|---|---|---|\n", policyResults, pv.ResultsTotal)
		for _, l := range pv.Results {
			p("| %s | %s | %s |\n", l.Key, l.Label, l.Text)
		}
	}
	section := func(title string, lines []line) {
		p("\n## %s\n\n| Figure | Key | Value | Denominator |\n|---|---|---|---|\n", title)
		for _, l := range lines {
			p("| %s | %s | %s | %s |\n", l.Label, l.Key, l.Text, orDash(l.Of))
		}
	}
	section("Hosts", d.Hosts)
	section("Domains", d.Domains)
	for _, t := range d.Tops {
		p("\n## %s\n\nOf %d (%s); %d distinct", t.Title, t.List.Total, t.Of, t.List.Distinct)
		if t.List.Other > 0 {
			p(", %d counted outside the top %d", t.List.Other, len(t.Rows))
		}
		p(".\n\n| # | Name | Count |\n|---|---|---|\n")
		for _, r := range t.Rows {
			p("| %d | %s | %s |\n", r.Rank, md(r.Name), r.Share)
		}
	}
	if c := d.Compare; c != nil {
		p("\n## Comparison with an earlier scan\n\nOld: started %s (%s). New: started %s (%s).\n\n",
			orDash(c.Old.Started), md(orDash(c.Old.Status)), orDash(c.New.Started), md(orDash(c.New.Status)))
		table := func(rows []compareRow) {
			p("| Figure | Old | New | Change |\n|---|---|---|---|\n")
			for _, r := range rows {
				p("| %s | %s | %s | %s |\n", md(r.Key), r.Old, r.New, r.Change)
			}
		}
		table(c.Hosts)
		p("\n")
		table(c.Domains)
		if len(c.Results) > 0 {
			p("\n")
			table(c.Results)
		}
		for _, t := range c.Top {
			p("\n### %s\n\n", t.Title)
			table(t.Rows)
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{"orDash": orDash,
	"policyIntro": func() string { return policyIntro }, "policyNotMeasured": func() string { return policyNotMeasured },
	"policyNoDNSSEC": func() string { return policyNoDNSSEC }, "policyResults": func() string { return policyResults }}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mxsurvey report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em}
svg.chart{display:block;max-width:100%;height:auto;margin:.5rem 0 1.5rem}
svg text{font-family:system-ui,sans-serif}
.scroll{overflow-x:auto}
.muted{color:#666}
</style>
</head>
<body>
<h1>mxsurvey report</h1>
<p>Scan: tool {{orDash .S.Scan.ToolVersion}}, schema {{.S.Scan.SchemaVersion}}, started {{orDash .S.Scan.Started}}, ended {{orDash .S.Scan.Ended}}, status {{orDash .S.Scan.Status}}.</p>
<p class="muted">Every share is “N of D (P%)”; the key of D is given beside it. Definitions: docs/statistics.md.</p>

<h2>Which name does the certificate carry?</h2>
<p>Of {{index .S.Hosts "with_cert"}} hosts with a parsed certificate (<code>hosts.with_cert</code>):</p>
<div class="scroll"><table><tr><th>Certificate matches</th><th>Hosts</th><th>Denominator</th></tr>
{{range .Headline}}<tr><td>{{.Label}}</td><td class="n">{{.Text}}</td><td><code>{{.Of}}</code></td></tr>
{{end}}</table></div>
{{template "chart" .HeadChart}}

{{with .Policy}}
<h2>Would a strict sender deliver?</h2>
<p>{{policyIntro}}</p>
{{if not .Measured}}<p class="muted">{{policyNotMeasured}}</p>{{else}}
<div class="scroll"><table><tr><th>Asked for</th><th>Key</th><th>Domains</th><th>Denominator</th></tr>
{{range .DANE}}{{template "figure" .}}{{end}}{{range .STS}}{{template "figure" .}}{{end}}{{template "figure" .TLSRPT}}
</table></div>
{{if not .DNSSEC}}<p class="muted">{{policyNoDNSSEC}}</p>{{else}}
<p>{{policyResults}} Of {{.ResultsTotal}} failing MX hosts:</p>
<div class="scroll"><table><tr><th>Result type</th><th>Meaning</th><th>MX hosts</th></tr>
{{range .Results}}<tr><td><code>{{.Key}}</code></td><td>{{.Label}}</td><td class="n">{{.Text}}</td></tr>
{{end}}</table></div>
{{if .Chart.Bars}}{{template "chart" .Chart}}{{end}}{{end}}{{end}}
{{end}}

<h2>Hosts</h2>
{{template "figures" .Hosts}}
<h2>Domains</h2>
{{template "figures" .Domains}}

{{range .Tops}}
<h2>{{.Title}}</h2>
<p>Of {{.List.Total}} ({{.Of}}); {{.List.Distinct}} distinct{{if .List.Other}}, {{.List.Other}} counted outside the top {{len .Rows}}{{end}}.</p>
{{if .Rows}}<div class="scroll"><table><tr><th>#</th><th>Name</th><th>Count</th></tr>
{{range .Rows}}<tr><td class="n">{{.Rank}}</td><td>{{.Name}}</td><td class="n">{{.Share}}</td></tr>
{{end}}</table></div>
{{template "chart" .Chart}}{{else}}<p class="muted">None.</p>{{end}}
{{end}}

{{with .Compare}}
<h2>Comparison with an earlier scan</h2>
<p>Old: started {{orDash .Old.Started}} ({{orDash .Old.Status}}). New: started {{orDash .New.Started}} ({{orDash .New.Status}}).</p>
{{template "compare" .Hosts}}
{{template "compare" .Domains}}
{{if .Results}}{{template "compare" .Results}}{{end}}
{{range .Top}}<h3>{{.Title}}</h3>{{template "compare" .Rows}}{{end}}
{{end}}
</body>
</html>
{{define "figures"}}<div class="scroll"><table><tr><th>Figure</th><th>Key</th><th>Value</th><th>Denominator</th></tr>
{{range .}}{{template "figure" .}}{{end}}</table></div>{{end}}
{{define "figure"}}<tr><td>{{.Label}}</td><td><code>{{.Key}}</code></td><td class="n">{{.Text}}</td><td><code>{{orDash .Of}}</code></td></tr>
{{end}}
{{define "compare"}}<div class="scroll"><table><tr><th>Figure</th><th>Old</th><th>New</th><th>Change</th></tr>
{{range .}}<tr><td>{{.Key}}</td><td class="n">{{.Old}}</td><td class="n">{{.New}}</td><td class="n">{{.Change}}</td></tr>
{{end}}</table></div>{{end}}
{{define "chart"}}<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" font-size="{{.FontSize}}">
<title>{{.Title}}</title>
{{range .Bars}}<g><title>{{.Full}}: {{.Value}}</title>
<text x="{{$.Inset}}" y="{{.LabelY}}">{{.Label}}</text>
<rect x="{{$.Inset}}" y="{{.BarY}}" width="{{.W}}" height="{{$.BarH}}" fill="#4a78b5"></rect>
<text x="{{.ValueX}}" y="{{.ValueY}}">{{.Value}}</text></g>
{{end}}</svg>{{end}}
`))

func htmlReport(s *Summary) ([]byte, error) {
	var b bytes.Buffer
	if err := htmlTmpl.Execute(&b, buildReport(s)); err != nil {
		return nil, fmt.Errorf("rendering report.html: %w", err)
	}
	return b.Bytes(), nil
}
