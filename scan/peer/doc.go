// Package peer holds what the scanner's clients share when they talk to a
// server on the internet: the SMTP prober (scan/probe) and the MTA-STS policy
// fetcher (scan/stsfetch). A TLS client handshake that verifies nothing and
// records the certificate chain exactly as sent (RFC 8446 §4.4.2, RFC 5246
// §7.4.2), even when the handshake then fails, run on a few shared worker
// goroutines so that the callers' own goroutines, which mostly wait on slow
// servers, keep small stacks; a byte-capped connection; and
// the one classification of what went wrong into the dataset's error_class
// vocabulary (docs/schema.md), by error identity and type, never by text.
package peer
