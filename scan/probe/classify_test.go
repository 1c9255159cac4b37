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

	"github.com/mxsurvey/mxsurvey/scan/record"
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
		{"nil", nil, record.ErrNone},
		{"canceled", fmt.Errorf("greeting: %w", context.Canceled), record.ErrCanceled},
		{"context deadline", context.DeadlineExceeded, record.ErrTimeout},
		{"conn deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, record.ErrTimeout},
		{"net.Error timeout", fmt.Errorf("x: %w", timeoutErr{}), record.ErrTimeout},
		{"interrupted read of a cancelled probe", &contextError{ctx: context.Canceled, err: os.ErrDeadlineExceeded}, record.ErrCanceled},
		{"closed conn of an expired probe", &contextError{ctx: context.DeadlineExceeded, err: net.ErrClosed}, record.ErrTimeout},
		{"refused", fmt.Errorf("connect: %w", opErr("connect", syscall.ECONNREFUSED)), record.ErrRefused},
		{"reset", opErr("read", syscall.ECONNRESET), record.ErrReset},
		{"broken pipe", opErr("write", syscall.EPIPE), record.ErrReset},
		{"host unreachable", opErr("connect", syscall.EHOSTUNREACH), record.ErrUnreachable},
		{"network unreachable", opErr("connect", syscall.ENETUNREACH), record.ErrUnreachable},
		{"eof", fmt.Errorf("smtpreply: %w", io.EOF), record.ErrClosed},
		{"unexpected eof", fmt.Errorf("smtpreply: %w", io.ErrUnexpectedEOF), record.ErrClosed},
		{"line cap", smtpreply.ErrLineTooLong, record.ErrTooLarge},
		{"lines cap", smtpreply.ErrTooManyLines, record.ErrTooLarge},
		{"reply cap", smtpreply.ErrTooLarge, record.ErrTooLarge},
		{"probe byte cap", fmt.Errorf("smtpreply: %w", ErrByteLimit), record.ErrTooLarge},
		{"byte cap inside TLS", &handshakeError{err: ErrByteLimit}, record.ErrTooLarge},
		{"malformed", fmt.Errorf("%w: line 1", smtpreply.ErrMalformed), record.ErrProtocol},
		{"454", &ReplyError{Command: "STARTTLS", Code: 454}, record.ErrRejected},
		{"554 greeting", &ReplyError{Command: "greeting", Code: 554}, record.ErrRejected},
		{"300 greeting", &ReplyError{Command: "greeting", Code: 300}, record.ErrProtocol},
		{"250 to STARTTLS", &ReplyError{Command: "STARTTLS", Code: 250}, record.ErrProtocol},
		{"no starttls", ErrNoSTARTTLS, record.ErrNoSTARTTLS},
		{"cert parse", &CertParseError{Err: errors.New("x509"), Handshake: errors.New("tls")}, record.ErrCertParse},
		{"alert type", tls.AlertError(40), record.ErrTLSAlert},
		{"remote alert", &handshakeError{err: &net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}}, record.ErrTLSAlert},
		{"local alert", &handshakeError{err: &net.OpError{Op: "local error", Err: errors.New("tls: bad record MAC")}}, record.ErrTLSOther},
		{"record header", &handshakeError{err: tls.RecordHeaderError{Msg: "not TLS"}}, record.ErrTLSOther},
		{"verification", &tls.CertificateVerificationError{Err: errors.New("x")}, record.ErrTLSOther},
		{"handshake, plain error", &handshakeError{err: errors.New("tls: server selected unsupported protocol version 300")}, record.ErrTLSOther},
		{"handshake, peer closed", &handshakeError{err: io.EOF}, record.ErrClosed},
		{"handshake, reset", &handshakeError{err: opErr("read", syscall.ECONNRESET)}, record.ErrReset},
		{"text is never matched", errors.New("dial tcp: connection refused: i/o timeout EOF"), record.ErrOther},
		{"closed by us", net.ErrClosed, record.ErrOther},
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
