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
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// timeoutErr is a net.Error that says it is a timeout, as resolvers and
// proxies return.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "slow" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, err)}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, survey.ErrNone},
		{"canceled", fmt.Errorf("greeting: %w", context.Canceled), survey.ErrCanceled},
		{"context deadline", context.DeadlineExceeded, survey.ErrTimeout},
		{"conn deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, survey.ErrTimeout},
		{"net.Error timeout", fmt.Errorf("x: %w", timeoutErr{}), survey.ErrTimeout},
		{"interrupted read of a cancelled probe", &contextError{ctx: context.Canceled, err: os.ErrDeadlineExceeded}, survey.ErrCanceled},
		{"closed conn of an expired probe", &contextError{ctx: context.DeadlineExceeded, err: net.ErrClosed}, survey.ErrTimeout},
		{"refused", fmt.Errorf("connect: %w", opErr("connect", syscall.ECONNREFUSED)), survey.ErrRefused},
		{"reset", opErr("read", syscall.ECONNRESET), survey.ErrReset},
		{"broken pipe", opErr("write", syscall.EPIPE), survey.ErrReset},
		{"host unreachable", opErr("connect", syscall.EHOSTUNREACH), survey.ErrUnreachable},
		{"network unreachable", opErr("connect", syscall.ENETUNREACH), survey.ErrUnreachable},
		{"eof", fmt.Errorf("smtpreply: %w", io.EOF), survey.ErrClosed},
		{"unexpected eof", fmt.Errorf("smtpreply: %w", io.ErrUnexpectedEOF), survey.ErrClosed},
		{"line cap", smtpreply.ErrLineTooLong, survey.ErrTooLarge},
		{"lines cap", smtpreply.ErrTooManyLines, survey.ErrTooLarge},
		{"reply cap", smtpreply.ErrTooLarge, survey.ErrTooLarge},
		{"probe byte cap", fmt.Errorf("smtpreply: %w", ErrByteLimit), survey.ErrTooLarge},
		{"byte cap inside TLS", &handshakeError{err: ErrByteLimit}, survey.ErrTooLarge},
		{"malformed", fmt.Errorf("%w: line 1", smtpreply.ErrMalformed), survey.ErrProtocol},
		{"454", &ReplyError{Command: "STARTTLS", Code: 454}, survey.ErrRejected},
		{"554 greeting", &ReplyError{Command: "greeting", Code: 554}, survey.ErrRejected},
		{"300 greeting", &ReplyError{Command: "greeting", Code: 300}, survey.ErrProtocol},
		{"250 to STARTTLS", &ReplyError{Command: "STARTTLS", Code: 250}, survey.ErrProtocol},
		{"no starttls", ErrNoSTARTTLS, survey.ErrNoSTARTTLS},
		{"cert parse", &CertParseError{Err: errors.New("x509"), Handshake: errors.New("tls")}, survey.ErrCertParse},
		{"alert type", tls.AlertError(40), survey.ErrTLSAlert},
		{"remote alert", &handshakeError{err: &net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}}, survey.ErrTLSAlert},
		{"local alert", &handshakeError{err: &net.OpError{Op: "local error", Err: errors.New("tls: bad record MAC")}}, survey.ErrTLSOther},
		{"record header", &handshakeError{err: tls.RecordHeaderError{Msg: "not TLS"}}, survey.ErrTLSOther},
		{"verification", &tls.CertificateVerificationError{Err: errors.New("x")}, survey.ErrTLSOther},
		{"handshake, plain error", &handshakeError{err: errors.New("tls: server selected unsupported protocol version 300")}, survey.ErrTLSOther},
		{"handshake, peer closed", &handshakeError{err: io.EOF}, survey.ErrClosed},
		{"handshake, reset", &handshakeError{err: opErr("read", syscall.ECONNRESET)}, survey.ErrReset},
		{"text is never matched", errors.New("dial tcp: connection refused: i/o timeout EOF"), survey.ErrOther},
		{"closed by us", net.ErrClosed, survey.ErrOther},
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
