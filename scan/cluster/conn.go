package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mxsurvey/mxsurvey/internal/clock"
)

// NATS is how a process reaches the NATS server: the client library's own
// options for addresses, credentials and TLS.
type NATS struct {
	URL    string // nats://HOST:PORT or tls://..., comma-separated for a cluster
	Creds  string // a credentials file (JWT and NKey seed), -nats-creds
	CA     string // PEM roots to verify the server's certificate with, -nats-ca
	Cert   string // client certificate and key, for servers that ask for one
	Key    string
	Prefix string // names of streams, bucket and subjects (DefaultPrefix)
}

func (n NATS) check() error {
	switch {
	case strings.TrimSpace(n.URL) == "":
		return errors.New("-nats: no URL given")
	case !prefixRE.MatchString(n.Prefix):
		return fmt.Errorf("-nats-prefix %q: want 1-32 letters, digits, _ or -", n.Prefix)
	case (n.Cert == "") != (n.Key == ""):
		return errors.New("-nats-cert and -nats-key go together")
	}
	return nil
}

// connect opens a connection that reconnects for ever (a restarted server
// is waited for), with its inboxes under the prefix so that one permission
// on PREFIX.> covers a worker's request-reply too. It fails with ErrNATS
// when the server cannot be reached, refuses the credentials, or has no
// JetStream.
func connect(ctx context.Context, n NATS, name string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.CustomInboxPrefix(n.Prefix + "._INBOX"),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				slog.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { slog.Info("NATS connection back", "server", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			slog.Warn("NATS", "subject", subj, "err", err)
		}),
	}
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.CA != "" {
		opts = append(opts, nats.RootCAs(n.CA))
	}
	if n.Cert != "" {
		opts = append(opts, nats.ClientCert(n.Cert, n.Key))
	}
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: cannot connect to %s: %w", ErrNATS, Redact(n.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrNATS, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(cctx); err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, nil, fmt.Errorf("%w: the server at %s has no JetStream for this account (start it with -js)", ErrNATS, Redact(n.URL))
		}
		return nil, nil, fmt.Errorf("%w: JetStream at %s: %w", ErrNATS, Redact(n.URL), err)
	}
	return nc, js, nil
}

// bucket opens (creating it if needed) the bucket where scans are
// announced. Coordinators and workers both may be first.
func bucket(ctx context.Context, js jetstream.JetStream, n names) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: n.bucket(),
		Description: "mxsurvey scans: scan ID -> options (scan/cluster.Spec)", Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("%w: opening bucket %s: %w", ErrNATS, n.bucket(), err)
	}
	return kv, nil
}

// duplicateWindow is how long JetStream remembers a message ID: a publish
// retried after a lost acknowledgement within it is stored once.
const duplicateWindow = 2 * time.Minute

// maxAge bounds what an abandoned scan leaves in the streams; a scan
// resumed later than that redoes what had not been committed.
const maxAge = 7 * 24 * time.Hour

// streams creates or updates the streams of the prefix: work queues in
// file storage, so a restarted server loses nothing acknowledged.
func streams(ctx context.Context, js jetstream.JetStream, n names) error {
	for _, cfg := range []jetstream.StreamConfig{
		{Name: n.domainsStream(), Subjects: []string{n.prefix + ".scan.*.domains"},
			Description: "mxsurvey domain batches to resolve"},
		{Name: n.resultsStream(), Subjects: []string{n.prefix + ".scan.*.results.*"},
			Description: "mxsurvey rows from workers, until the coordinator has committed them"},
	} {
		cfg.Retention = jetstream.WorkQueuePolicy
		cfg.Storage = jetstream.FileStorage
		cfg.Duplicates = duplicateWindow
		cfg.MaxAge = maxAge
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("%w: creating stream %s: %w", ErrNATS, cfg.Name, err)
		}
	}
	return nil
}

// publish stores a message in a stream, retrying until it is stored or ctx
// ends: through a server restart the client reconnects, and the message ID
// makes a retry after a lost acknowledgement a no-op.
func publish(ctx context.Context, js jetstream.JetStream, subject string, data []byte, id string) error {
	wait := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.Publish(pctx, subject, data, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("publishing to %s: %w", subject, err)
		}
		slog.Debug("publish failed; retrying", "subject", subject, "err", err)
		if err := clock.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("publishing to %s: %w", subject, err)
		}
		wait = min(2*wait, 2*time.Second)
	}
}
