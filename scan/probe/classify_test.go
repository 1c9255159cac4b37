package probe

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/peer"
	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// SMTP's own classes; the context, socket and TLS classes are peer's and
// tested there, so only their order against SMTP's is checked here.
func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, survey.ErrNone},
		{"line cap", smtpreply.ErrLineTooLong, survey.ErrTooLarge},
		{"lines cap", smtpreply.ErrTooManyLines, survey.ErrTooLarge},
		{"reply cap", smtpreply.ErrTooLarge, survey.ErrTooLarge},
		{"probe byte cap", fmt.Errorf("smtpreply: %w", peer.ErrByteLimit), survey.ErrTooLarge},
		{"malformed", fmt.Errorf("%w: line 1", smtpreply.ErrMalformed), survey.ErrProtocol},
		{"454", &ReplyError{Command: "STARTTLS", Code: 454}, survey.ErrRejected},
		{"554 greeting", &ReplyError{Command: "greeting", Code: 554}, survey.ErrRejected},
		{"300 greeting", &ReplyError{Command: "greeting", Code: 300}, survey.ErrProtocol},
		{"250 to STARTTLS", &ReplyError{Command: "STARTTLS", Code: 250}, survey.ErrProtocol},
		{"no starttls", ErrNoSTARTTLS, survey.ErrNoSTARTTLS},
		{"refusal of a cancelled probe", fmt.Errorf("%w (%w)", &ReplyError{Command: "EHLO", Code: 421}, context.Canceled), survey.ErrCanceled},
		{"eof", fmt.Errorf("smtpreply: %w", io.EOF), survey.ErrClosed},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

func ExampleClassify() {
	fmt.Println(Classify(&ReplyError{Command: "STARTTLS", Code: 454}))
	fmt.Println(Classify(fmt.Errorf("greeting: %w", io.EOF)))
	fmt.Println(Classify(ErrNoSTARTTLS))
	// Output:
	// rejected
	// closed
	// no_starttls
}
