package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/client"
)

// clientFlags are the flags every API-calling command shares.
type clientFlags struct {
	url, key, namespace string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", envOr("SUPPRESSD_URL", "http://127.0.0.1:8080"), "API base URL ($SUPPRESSD_URL)")
	// The default is read after parsing, never shown as the flag's default:
	// -h would print the secret.
	fs.StringVar(&c.key, "key", "", "API key (default: $SUPPRESSD_API_KEY)")
	fs.StringVar(&c.namespace, "namespace", "", "namespace (default: the server's default)")
}

func (c *clientFlags) client() (*client.Client, error) {
	if c.key == "" {
		c.key = os.Getenv("SUPPRESSD_API_KEY")
	}
	if c.key == "" {
		return nil, usageError{errors.New("an API key is required: --key or $SUPPRESSD_API_KEY")}
	}
	cl, err := client.New(c.url, c.key, client.Options{})
	if err != nil {
		return nil, usageError{apiCause(err)}
	}
	return cl, nil
}

// apiCause is a client error without the client's own "suppressd <op>: ",
// since main names the command.
func apiCause(err error) error {
	if op, ok := err.(*client.OpError); ok {
		return op.Err
	}
	return err
}

// apiFailure is the command's error for a failed API call. The API
// refusing the request (a 4xx: bad input, a bad key, a key without the
// scope) is the caller's to fix, so the command exits 2 with the API's
// message; anything else (no answer, a 5xx) exits 1.
func apiFailure(err error) error {
	err = apiCause(err)
	if refused(err) {
		return usageError{err}
	}
	return err
}

// refused reports whether the API answered and refused the request.
func refused(err error) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && !client.IsUnavailable(err) &&
		apiErr.Status >= 400 && apiErr.Status < 500 && apiErr.Status != http.StatusRequestTimeout && apiErr.Status != http.StatusTooManyRequests
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// runCheck asks whether one contact may be contacted. It prints the answer
// and exits 0 when allowed, 3 when suppressed. When the service does not
// answer it says "suppressed" (fail closed) and exits 1; when the API
// refuses the request (a bad address, a bad key) there is no answer to
// give: it prints the API's message and exits 2, like any other mistake
// in the invocation, so that a script does not read the contact as
// suppressed and move on.
func runCheck(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(io.err)
	var cf clientFlags
	cf.register(fs)
	var emails, phones, userIDs, maids multiFlag
	fs.Var(&emails, "email", "an email address (repeatable)")
	fs.Var(&phones, "phone", "a phone number (repeatable)")
	fs.Var(&userIDs, "user-id", "a customer id (repeatable)")
	fs.Var(&maids, "maid", "a mobile advertising id (repeatable)")
	channel := fs.String("channel", "email", "email, sms, push or ads")
	purpose := fs.String("purpose", "marketing", "marketing, advertising, profiling, sale_sharing or transactional")
	topic := fs.String("topic", "", "list or newsletter")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req := client.CheckRequest{Namespace: cf.namespace, Channel: *channel, Purpose: *purpose, Topic: *topic}
	for _, group := range []struct {
		typ    string
		values multiFlag
	}{{client.TypeEmail, emails}, {client.TypePhone, phones}, {client.TypeUserID, userIDs}, {client.TypeMAID, maids}} {
		for _, v := range group.values {
			req.Identifiers = append(req.Identifiers, client.Identifier{Type: group.typ, Value: v})
		}
	}
	if len(req.Identifiers) == 0 {
		return usageError{errors.New("name the contact: --email, --phone, --user-id or --maid")}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res, err := c.Check(ctx, req)
	if err != nil {
		if err = apiFailure(err); !errors.As(err, new(usageError)) {
			fmt.Fprintln(io.out, "suppressed (the service did not answer; fail closed)")
		}
		return err
	}
	if res.Allowed {
		fmt.Fprintln(io.out, "allowed")
		return nil
	}
	s := res.Suppression
	fmt.Fprintf(io.out, "suppressed: reason=%s scope=%s origin=%s source=%s since=%s\n", s.Reason, s.Scope, s.Origin, s.Source, s.Since.Format(time.RFC3339))
	return exitCode(3)
}

// exitCode ends a command with a status but no message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// openInput opens a file or stdin, unzipping gzip (recognised by its magic
// bytes). size is the file's size for progress (0 when unknown).
func openInput(name string, stdin io.Reader) (io.Reader, int64, func(), error) {
	var (
		r     = stdin
		size  int64
		close = func() error { return nil }
	)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, nil, err
		}
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		r, close = f, f.Close
	}
	br := bufio.NewReaderSize(r, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			_ = close()
			return nil, 0, nil, fmt.Errorf("%s: %w", name, err)
		}
		// Progress counts uncompressed bytes; the compressed size says
		// little about them.
		return zr, 0, func() { _ = zr.Close(); _ = close() }, nil
	}
	return br, size, func() { _ = close() }, nil
}

func openOutput(name string, stdout io.Writer) (io.Writer, func() error, error) {
	if name == "-" {
		bw := bufio.NewWriterSize(stdout, 256<<10)
		return bw, bw.Flush, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	return bw, func() error {
		if err := bw.Flush(); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}, nil
}

// runAPIKey makes an API key: the secret for the caller, and the entry for
// SUPPRESSD_API_KEYS, which holds only the secret's SHA-256.
func runAPIKey(_ context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("apikey", flag.ContinueOnError)
	fs.SetOutput(io.err)
	name := fs.String("name", "", "the key's name (who uses it)")
	scopes := fs.String("scopes", "check", "comma-separated: check, filter, publish, admin")
	asJSON := fs.Bool("json", false, `print {"name", "scopes", "secret", "entry"} as one JSON object`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || strings.ContainsAny(*name, ":,# \t") {
		return usageError{errors.New("--name is required, without ':', ',', '#' or spaces")}
	}
	sc, err := api.ParseScopes(*scopes)
	if err != nil {
		return usageError{fmt.Errorf("--scopes: %w", err)}
	}
	secret, entry, err := api.NewKey(*name, sc...)
	if err != nil {
		return err
	}
	if _, err := api.ParseKeys(entry); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(io.out).Encode(apiKeyJSON{Name: *name, Scopes: sc, Secret: secret, Entry: entry})
	}
	fmt.Fprintf(io.out, "secret (give it to %s; it is not stored anywhere): %s\nSUPPRESSD_API_KEYS entry: %s\n", *name, secret, entry)
	return nil
}

// apiKeyJSON is `suppressd apikey --json`.
type apiKeyJSON struct {
	Name   string      `json:"name"`
	Scopes []api.Scope `json:"scopes"`
	// Secret is for the caller (Authorization: Bearer <secret>); it is
	// not stored anywhere.
	Secret string `json:"secret"`
	// Entry is the line for SUPPRESSD_API_KEYS or its file.
	Entry string `json:"entry"`
}

// runPublish publishes CloudEvents through the API (/v1/events): one event
// per file, or one per line of stdin.
func runPublish(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(io.err)
	var cf clientFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") && a != "-" {
			// Flags stop at the first file: this one would be read as
			// a file name.
			return usageError{fmt.Errorf("flags go before the files: %s comes after %s", a, fs.Arg(0))}
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var events [][]byte
	if fs.NArg() == 0 {
		sc := bufio.NewScanner(io.in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				events = append(events, append([]byte(nil), line...))
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}
	for _, name := range fs.Args() {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		events = append(events, b)
	}
	for i, ev := range events {
		res, err := c.Publish(ctx, ev)
		if err != nil {
			var apiErr *client.APIError
			if errors.As(err, &apiErr) {
				for _, v := range apiErr.Violations {
					fmt.Fprintf(io.err, "  %s: %s\n", v.Path, v.Message)
				}
			}
			what := fmt.Sprintf("event %d", i+1)
			if fs.NArg() > 0 {
				what = fs.Arg(i)
			}
			return fmt.Errorf("%s: %w", what, apiFailure(err))
		}
		if res.Duplicate {
			fmt.Fprintf(io.out, "%s already published\n", res.ID)
		} else {
			fmt.Fprintf(io.out, "%s published\n", res.ID)
		}
	}
	return nil
}
