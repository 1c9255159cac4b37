// Package cli holds what the subcommands share with the mxsurvey dispatcher:
// the sentinel that turns a bad command line into exit status 2.
package cli

import "errors"

// ErrUsage wraps every error in a command line (unknown flag, impossible
// value, missing argument): the dispatcher prints it and exits 2, before
// any traffic is sent.
var ErrUsage = errors.New("usage")
