// Command suppressd is the suppression service: its API, its consumers and
// its operator tools, one subcommand each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/suppressd/suppressd/suppression"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// stdio is a command's standard streams: the process's in main, buffers in
// tests.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is one subcommand. It returns an error for main to print, after
// "suppressd <command>: ". Exit codes: 0 done; 1 failed (a service did not
// answer, a file could not be read...); 2 the invocation is wrong and
// retrying will not help: flags or arguments (usageError), the
// configuration (configError), or a request the API refused; 3 and above
// a command's own answers (exitCode: check's "suppressed").
type command struct {
	summary string
	run     func(ctx context.Context, args []string, io stdio) error
}

func commands() map[string]command {
	return map[string]command{
		"version":  {"print the version and build details", runVersion},
		"serve":    {"run the service roles (api, consumer) from the environment's configuration", runServe},
		"dev":      {"everything in one process on an embedded broker and store: nothing to install", runDev},
		"apikey":   {"make an API key: the secret, and its hashed SUPPRESSD_API_KEYS entry", runAPIKey},
		"link":     {"mint the List-Unsubscribe headers for a recipient (RFC 8058 one-click)", runLink},
		"publish":  {"publish CloudEvents through the API (files, or one per line of stdin)", runPublish},
		"subjects": {"what is held about a person, and the events on Kafka that shaped it (the access right)", runSubjects},
		"check":    {"may this contact be contacted? (asks the API; exit 0 allowed, 3 suppressed, 1 no answer, 2 refused)", runCheck},
		"filter":   {"stream a hashed audience list through the API, keep what may be targeted", runFilter},
		"rebuild":  {"replay the ledger into a fresh store generation and switch to it", runRebuild},
		"ledger":   {"the log of record: backfill it from intake topics consumed before it existed", runLedger},
		"import":   {"publish a mail provider's suppression export (SES, SendGrid, Postmark, Mailgun, CSV) as suppress events", runImport},
		"export":   {"stream the suppression list as NDJSON of storage keys, scopes and registers (no identifiers)", runExport},
	}
}

// usageError is an invocation to fix: a bad flag or argument, or a
// request the API refused (bad input, a bad key). It exits 2.
type usageError struct{ error }

// Unwrap lets errors.Is see flag.ErrHelp through a usageError.
func (u usageError) Unwrap() error { return u.error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, io stdio) int {
	if io.in == nil {
		io.in = strings.NewReader("")
	}
	stderr := io.err
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "suppressd: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	err := cmd.run(ctx, args[1:], io)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	// Main names the command, once; what a command returns does not name
	// it again. One line per problem (a bad configuration has one per
	// variable), each prefixed, so that every line of a log stands alone.
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(stderr, "suppressd %s: %s\n", args[0], line)
	}
	if errors.As(err, new(usageError)) || errors.As(err, new(configError)) {
		return 2
	}
	return 1
}

// parseFlags parses a command's flags and refuses any argument left after
// them: a value whose flag was forgotten (`check alice@example.org`), or
// a flag after one (`export --out x.ndjson --namespace`), would otherwise
// be ignored and the command run without what the user meant.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: suppressd <command> [flags]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}

func runVersion(_ context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(io.err)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(io.out, versionString())
	return nil
}

func versionString() string {
	parts := []string{"suppressd " + version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		parts = append(parts, bi.GoVersion)
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				parts = append(parts, "rev "+s.Value[:12])
			}
		}
	}
	parts = append(parts, fmt.Sprintf("normalization v%d", suppression.NormalizationVersion))
	return strings.Join(parts, ", ")
}
