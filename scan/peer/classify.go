package peer

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
)

// ErrByteLimit is returned by reads beyond a Metered connection's cap.
var ErrByteLimit = errors.New("byte limit reached")

// CertParseError is a TLS handshake that failed because crypto/x509 could not
// parse a certificate the server sent; the chain is still recorded.
type CertParseError struct {
	Err       error // from x509.ParseCertificate
	Handshake error // what the handshake returned
}

func (e *CertParseError) Error() string {
	return fmt.Sprintf("tls handshake: %v (certificate: %v)", e.Handshake, e.Err)
}

func (e *CertParseError) Unwrap() []error { return []error{e.Err, e.Handshake} }

// HandshakeError marks an error as coming from the TLS handshake, so that a
// handshake failure crypto/tls reports as a plain errors.New still classifies
// as tls_other.
type HandshakeError struct{ Err error }

func (e *HandshakeError) Error() string { return "tls handshake: " + e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// contextError attributes a failure to a context having ended.
type contextError struct{ ctx, err error }

func (e *contextError) Error() string   { return e.err.Error() + " (" + e.ctx.Error() + ")" }
func (e *contextError) Unwrap() []error { return []error{e.ctx, e.err} }

// InContext attributes err to ctx when ctx has ended and err does not say so
// already: a conversation whose context ended fails through a deadline pushed
// into the past or a closed connection, and a cancelled scan must read
// "canceled" rather than the "timeout" its interrupted read reported.
func InContext(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return &contextError{ctx: cerr, err: err}
	}
	return err
}

// Classify maps an error to the dataset's stable error class (the survey.Err*
// constants). It looks only at error identities and types, never at the text,
// which differs between Go versions and operating systems.
//
// proto, when not nil, classifies the errors of the caller's own protocol
// (SMTP replies, say): it is asked after the context and the byte cap and
// before the socket and TLS, and returns "" for an error it does not know.
//
// The order matters where one error wraps several: the context first (a
// cancelled scan is "canceled" whatever the interrupted read said), then
// caps, then the protocol, then the certificate, the socket, and TLS.
func Classify(err error, proto func(error) string) string {
	if err == nil {
		return survey.ErrNone
	}
	var (
		ne    net.Error
		cpe   *CertParseError
		ae    tls.AlertError
		oe    *net.OpError
		rhe   tls.RecordHeaderError
		cve   *tls.CertificateVerificationError
		ech   *tls.ECHRejectionError
		hse   *HandshakeError
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
	case isErr(ErrByteLimit):
		return survey.ErrTooLarge
	}
	if proto != nil {
		if c := proto(err); c != "" {
			return c
		}
	}
	switch {
	case errors.As(err, &cpe):
		return survey.ErrCertParse
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
