package pipeline

import (
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

func skippedRow(t target, port int, class, reason string) survey.ProbeRow {
	return survey.ProbeRow{IP: t.ip.String(), Port: int32(port), MXHost: t.mxHost, StartedAt: time.Now().UTC(),
		Outcome: survey.OutcomeSkipped, ErrorClass: class, Error: reason}
}

// invalidKey keys an invalid input line by its text, apart from every
// valid domain name.
func invalidKey(input string) string { return "\x00invalid:" + input }
