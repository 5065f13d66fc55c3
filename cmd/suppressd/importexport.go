package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/suppressd/suppressd/importer"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/suppression/redisstore"
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
// event for every good row; the bad ones go to a report, by line and
// reason, never by value.
//
//	file ─▶ importer (one row at a time) ─┬─▶ workers ─▶ publish.Publisher ─▶ Kafka (acks from all replicas)
//	                                      └─▶ report: line,reason
//
// Every event has origin system, source /import/<format> and an id derived
// from the row, so importing the same file again publishes the same events.
// Only an unreadable file or Kafka failing after retries is an error.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	formatName := fs.String("format", "", "ses, sendgrid, postmark, mailgun or csv")
	kind := fs.String("kind", "", "the provider's list: sendgrid bounces|blocks|spam_reports|unsubscribes|group_unsubscribes|invalid_emails; mailgun bounces|complaints|unsubscribes (default: from the file name, else the columns)")
	file := fs.String("file", "", "the export to read, plain or gzip (- for stdin)")
	var scopes scopeList
	fs.Var(&scopes, "scope", "scope to suppress in, repeatable or comma-separated (default email)")
	namespace := fs.String("namespace", "", "namespace (tenant or brand); default: the default namespace")
	reportPath := fs.String("report", "", "where to write the rejected rows as CSV (default: <file>.rejected.csv)")
	dryRun := fs.Bool("dry-run", false, "read and check the file, write the report, publish nothing")
	progress := fs.Bool("progress", isTerminal(stderr), "show progress (default: when stderr is a terminal)")
	workers := fs.Int("concurrency", 16, "events in flight at once")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
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
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	pepper, err := cfg.pepper()
	if err != nil {
		return err
	}
	normalizer, err := suppression.NewNormalizer(cfg.PhoneRegion)
	if err != nil {
		return err
	}

	now := time.Now()
	opts := importer.Options{Format: format, Kind: *kind, Normalizer: normalizer, Now: now}
	if *file != "-" {
		// A row without a time of its own happened before the file was
		// written: its modification time dates it, and stays the same if
		// the file is imported again.
		st, err := os.Stat(*file)
		if err != nil {
			return err
		}
		opts.DefaultTime = st.ModTime()
	}
	in, _, closeIn, err := openInput(*file)
	if err != nil {
		return err
	}
	defer closeIn()
	rep, err := newReport(*reportPath)
	if err != nil {
		return err
	}
	defer rep.close()

	var pub *publish.Publisher
	if !*dryRun {
		var closePub func()
		if pub, closePub, err = newPublisher(cfg, normalizer); err != nil {
			return err
		}
		defer closePub()
	}
	eo := importer.EventOptions{Namespace: *namespace, Scopes: scopes, IDKey: pepper}

	st := &importStats{start: now}
	var stopProgress func()
	if *progress {
		stopProgress = st.show(stderr)
	}

	// Publishing: a fixed set of workers; the first Kafka failure that
	// survives the retries cancels the rest and stops the reading.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		line int
		ev   suppression.Event
	}
	jobs := make(chan job, 2**workers)
	var (
		wg       sync.WaitGroup
		fatalMu  sync.Mutex
		fatalErr error
	)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if pctx.Err() != nil {
					continue // drain
				}
				err := publishRetry(pctx, pub, j.ev)
				switch {
				case err == nil:
					st.published.Add(1)
				case errors.Is(err, suppression.ErrInvalidEvent), errors.Is(err, suppression.ErrInvalidIdentifier):
					// The parser checked the row; this is a rule of the
					// event itself. The error names fields, never values.
					st.rejected.Add(1)
					rep.add(j.line, err.Error())
				default:
					fatalMu.Lock()
					if fatalErr == nil {
						fatalErr = err
					}
					fatalMu.Unlock()
					cancel()
				}
			}
		}()
	}
	parseErr := importer.Parse(in, opts,
		func(r importer.Row) error {
			st.rows.Add(1)
			if *dryRun {
				st.published.Add(1)
				return nil
			}
			select {
			case jobs <- job{line: r.Line, ev: importer.Event(format, r, eo)}:
				return nil
			case <-pctx.Done():
				return pctx.Err()
			}
		},
		func(r importer.Rejection) error {
			st.rows.Add(1)
			st.rejected.Add(1)
			rep.add(r.Line, r.Reason)
			return nil
		})
	close(jobs)
	wg.Wait()
	if stopProgress != nil {
		stopProgress()
	}
	if err := rep.close(); err != nil {
		return fmt.Errorf("report %s: %w", *reportPath, err)
	}
	published, rejected := st.published.Load(), st.rejected.Load()
	if fatalErr != nil {
		return fmt.Errorf("publish: %w (%d rows published before the failure; importing the file again is safe: the same rows publish the same event ids)", fatalErr, published)
	}
	if parseErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w (%d rows published before the error)", *file, parseErr, published)
	}
	if *dryRun {
		fmt.Fprintf(stdout, "checked %d rows: %d valid, %d rejected (report: %s); nothing published (--dry-run)\n", published+rejected, published, rejected, *reportPath)
		return nil
	}
	fmt.Fprintf(stdout, "imported %d rows: %d published, %d rejected (report: %s)\n", published+rejected, published, rejected, *reportPath)
	return nil
}

// publishRetry publishes one event, retrying Kafka failures with backoff
// (the writer retries a few times itself); invalid events are not retried.
func publishRetry(ctx context.Context, pub *publish.Publisher, e suppression.Event) error {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := pub.Publish(ctx, e)
		if err == nil || !errors.Is(err, publish.ErrUnavailable) || attempt == 5 {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// importStats are counted by the reader and the workers and read by the
// progress line.
type importStats struct {
	start                     time.Time
	rows, published, rejected atomic.Int64
}

// show redraws one progress line on the terminal until the returned
// function is called.
func (s *importStats) show(w io.Writer) func() {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				rows := s.rows.Load()
				rate := float64(rows) / max(time.Since(s.start).Seconds(), 1e-9)
				fmt.Fprintf(w, "\r%d rows read, %d published, %d rejected, %.0f rows/s\033[K", rows, s.published.Load(), s.rejected.Load(), rate)
			}
		}
	}()
	return func() { close(done); <-finished }
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

type exportRegister struct {
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	Origin string `json:"origin"`
	Source string `json:"source"`
	At     string `json:"at"`
}

// runExport streams the suppression list of the active generation as
// NDJSON: one line per (storage key, scope) with its registers. The store
// holds no identifier, so none can leak: a key is "<bucket>:<field>" in
// hex, the part of the storage key (an HMAC when a pepper is set) that the
// store keeps.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	namespace := fs.String("namespace", suppression.DefaultNamespace, "namespace to export; * for every namespace")
	out := fs.String("out", "-", "output file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	ns := *namespace
	if ns == "*" {
		ns = ""
	} else if err := suppression.CheckName(ns); err != nil {
		return usageError{fmt.Errorf("--namespace: %w", err)}
	}
	_, d, err := openDeps()
	if err != nil {
		return err
	}
	defer d.close()
	gen, err := d.store.Active(ctx)
	if err != nil {
		return err
	}
	w, closeOut, err := openOutput(*out, stdout)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	var keys, lines int
	err = d.store.Export(ctx, ns, func(k redisstore.ExportedKey) error {
		keys++
		scopes := make([]suppression.Scope, 0, len(k.Record))
		for s := range k.Record {
			scopes = append(scopes, s)
		}
		slices.Sort(scopes)
		for _, s := range scopes {
			st := k.Record[s]
			l := exportLine{Key: k.Key(), Namespace: k.Namespace, Scope: string(s), Suppressed: st.Suppressed(), Registers: make([]exportRegister, len(st))}
			for i, r := range st {
				l.Registers[i] = exportRegister{
					Action: r.Action.String(), Reason: string(r.Reason), Origin: string(r.Origin), Source: r.Source,
					At: r.Stamp.Time().Format("2006-01-02T15:04:05.000Z07:00"),
				}
			}
			if err := enc.Encode(l); err != nil {
				return err
			}
			lines++
		}
		return nil
	})
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: %w (the output is incomplete)", err)
	}
	fmt.Fprintf(stderr, "exported %d keys, %d lines, of namespace %s from generation %s\n", keys, lines, *namespace, gen)
	return nil
}
