package probe

import (
	"errors"
	"fmt"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/peer"
	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// ErrNoSTARTTLS ends a probe whose server did not offer STARTTLS; it is the
// expected end for many servers, not a fault. It is data in a row, not a
// return.
var ErrNoSTARTTLS = errors.New("probe: STARTTLS not offered")

// ReplyError is a reply whose code ended the conversation: a 4xx/5xx refusal
// (classified rejected) or a code that makes no sense at that point, such as
// "300" to a greeting (classified protocol).
type ReplyError struct {
	Command string // the command answered, or "greeting"
	Code    int
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("%s: server replied %03d", e.Command, e.Code)
}

// Classify maps a probe's error to the dataset's stable error class: the
// classes of SMTP (rejected, no_starttls, protocol, the reply caps) here, the
// context, socket and TLS ones by peer.Classify, which the MTA-STS fetcher
// shares.
func Classify(err error) string {
	return peer.Classify(err, smtpClass)
}

func smtpClass(err error) string {
	var re *ReplyError
	switch {
	case smtpreply.IsCap(err):
		return survey.ErrTooLarge
	case errors.Is(err, ErrNoSTARTTLS):
		return survey.ErrNoSTARTTLS
	case errors.As(err, &re):
		if re.Code >= 400 && re.Code < 600 {
			return survey.ErrRejected
		}
		return survey.ErrProtocol
	case errors.Is(err, smtpreply.ErrMalformed):
		return survey.ErrProtocol
	}
	return ""
}
