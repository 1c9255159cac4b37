// Old appliances still send certificates with negative serial numbers, which
// Go rejects since 1.23: measure them rather than failing the handshake.
//go:debug x509negativeserial=1

// Command mxsurvey measures which names mail servers present in TLS: it
// scans MX hosts with SMTP STARTTLS into a Parquet dataset (scan), turns a
// dataset into statistics and reports (analyze), and runs a simulated mail
// internet on loopback with known truth (lab).
//
// The command line is this package's alone: each subcommand's flag set is
// in a file of its own (scan.go, analyze.go), and turns flags into the
// configuration struct of the package that does the work, so that library
// packages never parse flags and every command line error exits 2.
//
// Exit statuses: 0 done, 1 failed, 2 a bad command line or a NATS server
// that cannot be used (before any traffic), 3 every worker refused a
// cluster scan (another version), 130 interrupted (resume with -resume).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/cluster"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

// errUsage wraps every error in a command line (unknown flag, impossible
// value, missing argument): run prints it and exits 2, before any traffic.
var errUsage = errors.New("usage")

// parseFlags parses a command's flags. done is true when the command has
// nothing more to do: after -h, whose usage the flag set printed (exit 0),
// or on a bad command line, whose err wraps errUsage.
func parseFlags(fs *flag.FlagSet, args []string) (done bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return true, fmt.Errorf("%w: %v", errUsage, err)
	}
	return false, nil
}

// noArguments is the check of a command that takes flags only.
func noArguments(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"scan", "resolve MX hosts and probe them with SMTP STARTTLS into a Parquet dataset", scanCommand},
	{"worker", "take part in scans coordinated over NATS (scan -nats): resolve and probe", workerCommand},
	{"analyze", "compute statistics, reports and notebook exports from scan datasets", analyzeCommand},
	{"lab", "run a simulated mail internet on loopback, with ground truth", labCommand},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "mxsurvey %s: measure which names mail servers present in TLS\n\nusage: mxsurvey COMMAND [flags] [args]\n\ncommands:\n", survey.Version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n\n'mxsurvey COMMAND -h' lists a command's flags.\n", "version", "print the version")
}

func main() {
	os.Exit(profile(os.Args[1:], run))
}

func run(args []string) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "version" {
		fmt.Printf("mxsurvey %s (schema %d)\n", survey.Version, survey.SchemaVersion)
		return 0
	}
	// The first SIGINT/SIGTERM cancels the context: stages stop taking work,
	// in-flight probes are abandoned, everything finished is committed. A
	// second signal kills the process the default way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], os.Stdout, os.Stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage), errors.Is(err, cluster.ErrNATS):
			fmt.Fprintf(os.Stderr, "mxsurvey %s: %v\n", c.name, err)
			return 2
		case errors.Is(err, cluster.ErrRefused):
			fmt.Fprintf(os.Stderr, "mxsurvey %s: %v\n", c.name, err)
			return 3
		case errors.Is(err, pipeline.ErrInterrupted):
			fmt.Fprintf(os.Stderr, "mxsurvey %s: %v\n", c.name, err)
			return 130
		default:
			fmt.Fprintf(os.Stderr, "mxsurvey %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "mxsurvey: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return 2
}
