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
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
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
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()
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
		{"interrupted read of a cancelled probe", InContext(canceled, os.ErrDeadlineExceeded), survey.ErrCanceled},
		{"closed conn of an expired probe", InContext(expired, net.ErrClosed), survey.ErrTimeout},
		{"refused", fmt.Errorf("connect: %w", opErr("connect", syscall.ECONNREFUSED)), survey.ErrRefused},
		{"reset", opErr("read", syscall.ECONNRESET), survey.ErrReset},
		{"broken pipe", opErr("write", syscall.EPIPE), survey.ErrReset},
		{"host unreachable", opErr("connect", syscall.EHOSTUNREACH), survey.ErrUnreachable},
		{"network unreachable", opErr("connect", syscall.ENETUNREACH), survey.ErrUnreachable},
		{"eof", fmt.Errorf("smtpreply: %w", io.EOF), survey.ErrClosed},
		{"unexpected eof", fmt.Errorf("smtpreply: %w", io.ErrUnexpectedEOF), survey.ErrClosed},
		{"byte cap", fmt.Errorf("reading: %w", ErrByteLimit), survey.ErrTooLarge},
		{"byte cap inside TLS", &HandshakeError{Err: ErrByteLimit}, survey.ErrTooLarge},
		{"cert parse", &CertParseError{Err: errors.New("x509"), Handshake: errors.New("tls")}, survey.ErrCertParse},
		{"alert type", tls.AlertError(40), survey.ErrTLSAlert},
		{"remote alert", &HandshakeError{Err: &net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}}, survey.ErrTLSAlert},
		{"local alert", &HandshakeError{Err: &net.OpError{Op: "local error", Err: errors.New("tls: bad record MAC")}}, survey.ErrTLSOther},
		{"record header", &HandshakeError{Err: tls.RecordHeaderError{Msg: "not TLS"}}, survey.ErrTLSOther},
		{"verification", &tls.CertificateVerificationError{Err: errors.New("x")}, survey.ErrTLSOther},
		{"handshake, plain error", &HandshakeError{Err: errors.New("tls: server selected unsupported protocol version 300")}, survey.ErrTLSOther},
		{"handshake, peer closed", &HandshakeError{Err: io.EOF}, survey.ErrClosed},
		{"handshake, reset", &HandshakeError{Err: opErr("read", syscall.ECONNRESET)}, survey.ErrReset},
		{"text is never matched", errors.New("dial tcp: connection refused: i/o timeout EOF"), survey.ErrOther},
		{"closed by us", net.ErrClosed, survey.ErrOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err, nil); got != tt.want {
			t.Errorf("%s: Classify(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

// A protocol's own classes come after the context and the caps, before the
// socket: a cancelled conversation is canceled whatever its protocol said.
func TestClassifyProto(t *testing.T) {
	errRefusal := errors.New("refusal")
	proto := func(err error) string {
		if errors.Is(err, errRefusal) {
			return survey.ErrRejected
		}
		return ""
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errRefusal, survey.ErrRejected},
		{fmt.Errorf("%w after %w", errRefusal, context.Canceled), survey.ErrCanceled},
		{fmt.Errorf("%w after %w", errRefusal, ErrByteLimit), survey.ErrTooLarge},
		{fmt.Errorf("%w after %w", errRefusal, io.EOF), survey.ErrRejected},
		{io.EOF, survey.ErrClosed},
	} {
		if got := Classify(tt.err, proto); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
