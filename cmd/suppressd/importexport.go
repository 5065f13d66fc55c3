package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/suppressd/suppressd/importer"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// scopeList is a repeatable, comma-separated --scope flag.
type scopeList []suppression.Scope

func (s *scopeList) String() string {
	parts := make([]string, len(*s))
	for i, x := range *s {
		parts[i] = string(x)
	}
	return strings.Join(parts, ",")
}

func (s *scopeList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		sc, err := suppression.ParseScope(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*s = append(*s, sc)
	}
	return nil
}

// runImport reads a provider's suppression export and publishes a suppress
// event for every good row through the import pipeline (importer.Run, the
// same as POST /v1/import); the bad rows go to a report, by line and
// reason, never by value. Only an unreadable file or Kafka failing after
// retries is an error.
func runImport(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(io.err)
	readsConfig(fs)
	formatName := fs.String("format", "", "ses, sendgrid, postmark, mailgun or csv")
	kind := fs.String("kind", "", "the provider's list: sendgrid bounces|blocks|spam_reports|unsubscribes|group_unsubscribes|invalid_emails; mailgun bounces|complaints|unsubscribes (default: from the file name, else the columns)")
	file := fs.String("file", "", "the export to read, plain or gzip (- for stdin)")
	var scopes scopeList
	fs.Var(&scopes, "scope", "scope to suppress in, repeatable or comma-separated (default email)")
	namespace := fs.String("namespace", "", "namespace (tenant or brand); default: the default namespace")
	reportPath := fs.String("report", "", "where to write the rejected rows as CSV (default: <file>.rejected.csv)")
	dryRun := fs.Bool("dry-run", false, "read and check the file, write the report, publish nothing")
	showProgress := fs.Bool("progress", isTerminal(io.err), "show progress (default: when stderr is a terminal)")
	workers := fs.Int("concurrency", 16, "events in flight at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	format, err := importer.ParseFormat(*formatName)
	if err != nil {
		return usageError{err}
	}
	if *file == "" {
		return usageError{errors.New("--file is required (- for stdin)")}
	}
	if *namespace != "" {
		if err := suppression.CheckName(*namespace); err != nil {
			return usageError{fmt.Errorf("--namespace: %w", err)}
		}
	}
	if len(scopes) == 0 {
		scopes = scopeList{suppression.ChannelScope(suppression.ChannelEmail)}
	}
	if *workers < 1 {
		return usageError{errors.New("--concurrency must be at least 1")}
	}
	if *kind == "" {
		*kind = importer.KindFromName(format, filepath.Base(*file))
	}
	if *reportPath == "" {
		*reportPath = "import-rejected.csv"
		if *file != "-" {
			*reportPath = *file + ".rejected.csv"
		}
	}
	s, err := load("")
	if err != nil {
		return err
	}

	now := time.Now()
	parse := importer.Options{Format: format, Kind: *kind, Normalizer: s.normalizer, Now: now}
	if *file != "-" {
		// A row without a time of its own happened before the file was
		// written: its modification time dates it, and stays the same if
		// the file is imported again.
		st, err := os.Stat(*file)
		if err != nil {
			return err
		}
		parse.DefaultTime = st.ModTime()
	}
	in, _, closeIn, err := openInput(*file, io.in)
	if err != nil {
		return err
	}
	defer closeIn()
	rep, err := newReport(*reportPath)
	if err != nil {
		return err
	}
	defer rep.close()

	var pub importer.Publisher
	if !*dryRun {
		p, closePub, err := newPublisher(s, nil)
		if err != nil {
			return err
		}
		defer closePub()
		pub = p
	}
	st := &importer.Stats{}
	prog := startRedraw(io.err, *showProgress, func() string {
		rows := st.Rows.Load()
		return fmt.Sprintf("%d rows read, %d published, %d rejected, %.0f rows/s", rows, st.Published.Load(), st.Rejected.Load(),
			float64(rows)/max(time.Since(now).Seconds(), 1e-9))
	})
	res, err := importer.Run(ctx, in, pub, importer.RunOptions{
		Parse:       parse,
		Events:      importer.EventOptions{Namespace: *namespace, Scopes: scopes, Keyer: s.keyer},
		Concurrency: *workers, DryRun: *dryRun, Stats: st,
		Reject: func(r importer.Rejection) { rep.add(r.Line, r.Reason) },
	})
	prog.end()
	if cerr := rep.close(); cerr != nil {
		return fmt.Errorf("report %s: %w", *reportPath, cerr)
	}
	switch {
	case errors.Is(err, importer.ErrPublish):
		return fmt.Errorf("%w (importing the file again is safe: the same rows publish the same event ids)", err)
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("%s: %w (%d rows published before the error)", *file, err, res.Published)
	}
	if *dryRun {
		fmt.Fprintf(io.out, "checked %d rows: %d valid, %d rejected (report: %s); nothing published (--dry-run)\n", res.Rows, res.Published, res.Rejected, *reportPath)
		return nil
	}
	fmt.Fprintf(io.out, "imported %d rows: %d published, %d rejected (report: %s)\n", res.Rows, res.Published, res.Rejected, *reportPath)
	return nil
}

// report is the CSV of rejected rows: line and reason, never a value.
type report struct {
	mu   sync.Mutex
	f    *os.File
	w    *csv.Writer
	done bool
	err  error
}

func newReport(path string) (*report, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	w := csv.NewWriter(f)
	if err := w.Write([]string{"line", "reason"}); err != nil {
		_ = f.Close()
		return nil, err
	}
	return &report{f: f, w: w}, nil
}

func (r *report) add(line int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil && !r.done {
		r.err = r.w.Write([]string{strconv.Itoa(line), reason})
	}
}

// close flushes and closes the report; later calls return the first
// result.
func (r *report) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return r.err
	}
	r.done = true
	r.w.Flush()
	r.err = errors.Join(r.err, r.w.Error(), r.f.Close())
	return r.err
}

// exportLine is one line of `suppressd export`: one scope of one stored key.
type exportLine struct {
	Key        string           `json:"key"`
	Namespace  string           `json:"namespace"`
	Scope      string           `json:"scope"`
	Suppressed bool             `json:"suppressed"`
	Registers  []exportRegister `json:"registers"`
}

// exportRegister is one register of a stored state, in export's and
// subjects --json's output, with the fields of the API's subject lookup.
type exportRegister struct {
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	Origin string `json:"origin"`
	Source string `json:"source"`
	At     string `json:"at"`
}

func newExportRegister(r suppression.Register) exportRegister {
	return exportRegister{
		Action: r.Action.String(), Reason: string(r.Reason), Origin: string(r.Origin), Source: r.Source,
		At: r.Stamp.Time().Format("2006-01-02T15:04:05.000Z07:00"),
	}
}

// runExport streams the suppression list of the active generation as
// NDJSON: one line per (storage key, scope) with its registers. The store
// holds no identifier, so none can leak: a key is "<bucket>:<field>" in
// hex, the part of the storage key (an HMAC when a pepper is set) that the
// store keeps.
func runExport(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(io.err)
	readsConfig(fs)
	namespace := fs.String("namespace", suppression.DefaultNamespace, "namespace to export; * for every namespace")
	out := fs.String("out", "-", "output file (- for stdout)")
	asJSON := fs.Bool("json", false, `end the output with a summary line, {"summary": {...}}, instead of a sentence on stderr: output without it is incomplete`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ns := *namespace
	if ns == "*" {
		ns = ""
	} else if err := suppression.CheckName(ns); err != nil {
		return usageError{fmt.Errorf("--namespace: %w", err)}
	}
	s, err := load("")
	if err != nil {
		return err
	}
	d, err := openStore(s)
	if err != nil {
		return err
	}
	defer d.close()
	gen, err := d.store.Active(ctx)
	if err != nil {
		return err
	}
	w, closeOut, err := openOutput(*out, io.out)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	var keys, lines int
	err = d.store.Export(ctx, ns, func(k redisstore.ExportedKey) error {
		keys++
		for _, scope := range k.Record.Scopes() {
			st := k.Record[scope]
			l := exportLine{Key: k.Key(), Namespace: k.Namespace, Scope: string(scope), Suppressed: st.Suppressed(), Registers: make([]exportRegister, len(st))}
			for i, r := range st {
				l.Registers[i] = newExportRegister(r)
			}
			if err := enc.Encode(l); err != nil {
				return err
			}
			lines++
		}
		return nil
	})
	if err == nil && *asJSON {
		err = enc.Encode(exportEnd{Summary: exportSummary{Namespace: *namespace, Generation: gen, Keys: keys, Lines: lines}})
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w (the output is incomplete)", err)
	}
	if !*asJSON {
		fmt.Fprintf(io.err, "exported %d keys, %d lines, of namespace %s from generation %s\n", keys, lines, *namespace, gen)
	}
	return nil
}

// exportEnd is the last line of `suppressd export --json`: a consumer
// tells it from a record by its one key, and knows an output without it
// to be incomplete.
type exportEnd struct {
	Summary exportSummary `json:"summary"`
}

type exportSummary struct {
	// Namespace is the namespace exported, * for all.
	Namespace string `json:"namespace"`
	// Generation is the store generation read.
	Generation string `json:"generation"`
	// Keys and Lines count the storage keys and the lines (one per key
	// and scope) written before this one.
	Keys  int `json:"keys"`
	Lines int `json:"lines"`
}
