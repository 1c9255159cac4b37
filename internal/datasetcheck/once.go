package datasetcheck

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Once is what ExactlyOnce counted.
type Once struct {
	Domains, Targets, MXHosts, MXParts int
}

// ExactlyOnce holds the dataset in dir to its input: every input domain
// (an invalid line by its error row) in the mx table, each with all its rows in one part (a domain
// written twice lands in two); every target an mx row references with
// exactly one probe row; with the policy tables (policies on), every valid
// domain with exactly one policies row, every MX host the mx rows name with
// exactly one tlsa row and no tlsa row for a host they do not name (the
// dataset contract, docs/schema.md); every part readable to its end. It returns the counts and what is wrong (nil when
// nothing is).
func ExactlyOnce(input, dir string) (Once, []string, error) {
	in, err := domains.Open(input, domains.FormatAuto)
	if err != nil {
		return Once{}, nil, err
	}
	want := map[string]bool{}  // every input line's key in the mx table
	valid := map[string]bool{} // the valid domains: each has a policies row
	for {
		e, err := in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			in.Close()
			return Once{}, nil, err
		}
		if e.Err == "" {
			want[e.Domain], valid[e.Domain] = true, true
		} else {
			want[e.Input] = true // its error row stands for the line
		}
	}
	in.Close()
	var problems []string
	partOf := map[string]string{}
	referenced := map[string]bool{}
	twice := map[string]bool{}
	mxHosts := map[string]bool{}
	mxParts, err := eachPart(survey.MXDir(dir), func(part string, r *survey.MXRow) {
		if prev, ok := partOf[r.Domain]; ok && prev != part {
			twice[r.Domain] = true
		}
		partOf[r.Domain] = part
		if r.IP != "" {
			referenced[survey.TargetKey(r.IP, r.MXHost)] = true
		}
		if r.MXHost != "" {
			mxHosts[r.MXHost] = true
		}
	})
	if err != nil {
		return Once{}, nil, err
	}
	if len(twice) > 0 {
		problems = append(problems, fmt.Sprintf("%d domains in more than one part (written twice)", len(twice)))
	}
	missing := 0
	for d := range want {
		if _, ok := partOf[d]; !ok {
			missing++
		}
	}
	if missing > 0 || len(partOf) != len(want) {
		problems = append(problems, fmt.Sprintf("dataset has %d domains, input %d, %d input domains missing", len(partOf), len(want), missing))
	}
	probed := map[string]int{}
	if _, err := eachPart(survey.ProbesDir(dir), func(_ string, r *survey.ProbeRow) {
		probed[survey.TargetKey(r.IP, r.MXHost)]++
	}); err != nil {
		return Once{}, nil, err
	}
	dup, unprobed := 0, 0
	for _, n := range probed {
		if n > 1 {
			dup++
		}
	}
	for k := range referenced {
		if probed[k] == 0 {
			unprobed++
		}
	}
	if dup > 0 || unprobed > 0 || len(probed) != len(referenced) {
		problems = append(problems, fmt.Sprintf("targets: %d referenced, %d with probe rows, %d probed twice, %d never probed",
			len(referenced), len(probed), dup, unprobed))
	}
	if _, err := os.Stat(survey.PoliciesDir(dir)); err == nil {
		polRows, tlsaRows := map[string]int{}, map[string]int{}
		if _, err := eachPart(survey.PoliciesDir(dir), func(_ string, r *survey.PolicyRow) { polRows[r.Domain]++ }); err != nil {
			return Once{}, nil, err
		}
		if _, err := eachPart(survey.TLSADir(dir), func(_ string, r *survey.TLSARow) { tlsaRows[r.MXHost]++ }); err != nil {
			return Once{}, nil, err
		}
		for what, rows := range map[string]struct {
			got  map[string]int
			want map[string]bool
		}{"domains' policies": {polRows, valid}, "MX hosts' tlsa": {tlsaRows, mxHosts}} {
			bad, orphans := 0, 0
			for k := range rows.want {
				if rows.got[k] != 1 {
					bad++
				}
			}
			for k := range rows.got {
				if !rows.want[k] {
					orphans++
				}
			}
			if bad > 0 || orphans > 0 {
				problems = append(problems, fmt.Sprintf("%s rows: %d keys, %d wanted, %d wanted without exactly one row, %d not wanted (no mx row names them)",
					what, len(rows.got), len(rows.want), bad, orphans))
			}
		}
	}
	return Once{Domains: len(partOf), Targets: len(probed), MXHosts: len(mxHosts), MXParts: mxParts}, problems, nil
}

// eachPart reads every committed part whole, naming the part of each row,
// and returns the number of parts.
func eachPart[T any](dir string, fn func(part string, r *T)) (int, error) {
	parts, err := store.Parts(dir)
	if err != nil {
		return 0, err
	}
	for _, p := range parts {
		if err := store.ReadPart(p, func(r *T) error { fn(p, r); return nil }); err != nil {
			return 0, fmt.Errorf("part %s does not read back whole: %w", p, err)
		}
	}
	return len(parts), nil
}
