// Package realservers is the "real servers in the loop" integration suite of
// mxsurvey: it starts Postfix, Exim, NSD, Unbound and nginx from Debian's
// packages on their own 127.77.0.x addresses, with certificates made by
// openssl and zones signed by ldns for the test, scans the zones they serve
// with `mxsurvey scan`, and checks the rows against what the servers actually
// send (raw captures made by the test itself) and against what the tools mail
// and DNS administrators trust report for the same servers (`openssl s_client
// -starttls smtp`, `posttls-finger`, also at the DANE level, `dig`, `delv`,
// `curl`).
//
// The package has no code of its own: everything is in the _test.go files.
// See README.md for how to run it and what it starts.
package realservers
