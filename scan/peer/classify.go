package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// Errors the prober produces itself. They are data in a row, not returns.
var (
	// ErrNoSTARTTLS ends a probe whose server did not offer STARTTLS; it is
	// the expected end for many servers, not a fault.
	ErrNoSTARTTLS = errors.New("probe: STARTTLS not offered")
	// ErrByteLimit is returned by reads beyond Config.MaxProbeBytes.
	ErrByteLimit = errors.New("probe: byte limit reached")
)

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

// CertParseError is a TLS handshake that failed because crypto/x509 could not
// parse a certificate the server sent; the chain is still in the row.
type CertParseError struct {
	Err       error // from x509.ParseCertificate
	Handshake error // what the handshake returned
}

func (e *CertParseError) Error() string {
	return fmt.Sprintf("tls handshake: %v (certificate: %v)", e.Handshake, e.Err)
}

func (e *CertParseError) Unwrap() []error { return []error{e.Err, e.Handshake} }

// handshakeError marks an error as coming from the TLS handshake, so that a
// handshake failure crypto/tls reports as a plain errors.New still classifies
// as tls_other.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "tls handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// contextError attributes a failure to the probe's context having ended.
type contextError struct{ ctx, err error }

func (e *contextError) Error() string   { return e.err.Error() + " (" + e.ctx.Error() + ")" }
func (e *contextError) Unwrap() []error { return []error{e.ctx, e.err} }

// Classify maps an error to the dataset's stable error class (the survey.Err*
// constants). It looks only at error identities and types, never at the text,
// which differs between Go versions and operating systems.
//
// The order matters where one error wraps several: the context first (a
// cancelled scan is "canceled" whatever the interrupted read said), then
// caps, then SMTP, then the socket, then TLS.
func Classify(err error) string {
	if err == nil {
		return survey.ErrNone
	}
	var (
		ne    net.Error
		re    *ReplyError
		cpe   *CertParseError
		ae    tls.AlertError
		oe    *net.OpError
		rhe   tls.RecordHeaderError
		cve   *tls.CertificateVerificationError
		ech   *tls.ECHRejectionError
		hse   *handshakeError
		isErr = func(targets ...error) bool {
			for _, t := range targets {
				if errors.Is(err, t) {
					return true
				}
			}
			return false
		}
	)
	switch {
	case isErr(context.Canceled):
		return survey.ErrCanceled
	case isErr(context.DeadlineExceeded, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return survey.ErrTimeout
	case isErr(ErrByteLimit) || smtpreply.IsCap(err):
		return survey.ErrTooLarge
	case isErr(ErrNoSTARTTLS):
		return survey.ErrNoSTARTTLS
	case errors.As(err, &re):
		if re.Code >= 400 && re.Code < 600 {
			return survey.ErrRejected
		}
		return survey.ErrProtocol
	case errors.As(err, &cpe):
		return survey.ErrCertParse
	case isErr(smtpreply.ErrMalformed):
		return survey.ErrProtocol
	case isErr(syscall.ECONNREFUSED):
		return survey.ErrRefused
	case isErr(syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED):
		return survey.ErrReset
	case isErr(syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN):
		return survey.ErrUnreachable
	case isErr(io.EOF, io.ErrUnexpectedEOF):
		return survey.ErrClosed
	// crypto/tls reports an alert received from a TCP peer as a *net.OpError
	// with Op "remote error" around an unexported type; AlertError is only
	// used on QUIC today, but is the documented type, so both are checked.
	case errors.As(err, &ae),
		errors.As(err, &oe) && oe.Op == "remote error":
		return survey.ErrTLSAlert
	case errors.As(err, &rhe), errors.As(err, &cve), errors.As(err, &ech), errors.As(err, &hse):
		return survey.ErrTLSOther
	}
	return survey.ErrOther
}
