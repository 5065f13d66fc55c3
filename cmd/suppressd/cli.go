package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// clientFlags are the flags every API-calling command shares.
type clientFlags struct {
	url, key, namespace string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", envOr("SUPPRESSD_URL", "http://127.0.0.1:8080"), "API base URL ($SUPPRESSD_URL)")
	fs.StringVar(&c.key, "key", os.Getenv("SUPPRESSD_API_KEY"), "API key ($SUPPRESSD_API_KEY)")
	fs.StringVar(&c.namespace, "namespace", "", "namespace (default: the server's default)")
}

func (c *clientFlags) client() (*client.Client, error) {
	if c.key == "" {
		return nil, usageError{errors.New("an API key is required: --key or $SUPPRESSD_API_KEY")}
	}
	return client.New(c.url, c.key, client.Options{})
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
// and exits 0 when allowed, 3 when suppressed; an error (the service could
// not answer) is treated as suppressed and exits 1.
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
	if err := fs.Parse(args); err != nil {
		return usageError{err}
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
		fmt.Fprintln(io.out, "suppressed (the service did not answer; fail closed)")
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
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *name == "" || strings.ContainsAny(*name, ":,") {
		return usageError{errors.New("--name is required, without ':' or ','")}
	}
	var sc []api.Scope
	for _, s := range strings.Split(*scopes, ",") {
		sc = append(sc, api.Scope(strings.TrimSpace(s)))
	}
	secret, entry, err := api.NewKey(*name, sc...)
	if err != nil {
		return err
	}
	if _, err := api.ParseKeys(entry); err != nil {
		return usageError{err}
	}
	fmt.Fprintf(io.out, "secret (give it to %s; it is not stored anywhere): %s\nSUPPRESSD_API_KEYS entry: %s\n", *name, secret, entry)
	return nil
}

// runLink mints the List-Unsubscribe headers for one recipient and send,
// with the keys of SUPPRESSD_LINK_KEYS.
func runLink(_ context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("link", flag.ContinueOnError)
	fs.SetOutput(io.err)
	email := fs.String("email", "", "the recipient's address")
	phone := fs.String("phone", "", "or a phone number (SMS)")
	namespace := fs.String("namespace", "", "namespace")
	var scopes multiFlag
	fs.Var(&scopes, "scope", "what the link unsubscribes from: email, topic:<name>, * ... (repeatable; default email)")
	campaign := fs.String("campaign", "", "campaign id, for the audit trail")
	list := fs.String("list", "", "list id, for the audit trail")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg, err := load("")
	if err != nil {
		return err
	}
	kr := cfg.keyring
	if kr == nil {
		return errors.New("SUPPRESSD_LINK_KEYS: no link keys configured")
	}
	if cfg.Link.BaseURL == "" {
		return errors.New("SUPPRESSD_LINK_BASE_URL: the public URL the links point at is required")
	}
	var id suppression.Identifier
	switch {
	case *email != "" && *phone == "":
		id = suppression.Identifier{Type: suppression.IDEmail, Value: *email}
	case *phone != "" && *email == "":
		id = suppression.Identifier{Type: suppression.IDPhone, Value: *phone}
	default:
		return usageError{errors.New("name the recipient with --email or --phone")}
	}
	if len(scopes) == 0 {
		scopes = multiFlag{"email"}
	}
	claims := unsubscribe.Claims{Namespace: *namespace, Identifier: id, CampaignID: *campaign, ListID: *list}
	for _, s := range scopes {
		sc, err := suppression.ParseScope(s)
		if err != nil {
			return usageError{fmt.Errorf("--scope: %w", err)}
		}
		claims.Scopes = append(claims.Scopes, sc)
	}
	now := time.Now()
	claims.IssuedAt, claims.ExpiresAt = now, now.Add(cfg.Link.TTL)
	token, err := kr.Mint(claims, now)
	if err != nil {
		return err
	}
	lu, lup, err := unsubscribe.Headers(cfg.Link.BaseURL, token, cfg.Link.Mailto)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "List-Unsubscribe: %s\nList-Unsubscribe-Post: %s\n", lu, lup)
	return nil
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
			return fmt.Errorf("event %d: %w", i+1, err)
		}
		if res.Duplicate {
			fmt.Fprintf(io.out, "%s already published\n", res.ID)
		} else {
			fmt.Fprintf(io.out, "%s published\n", res.ID)
		}
	}
	return nil
}
