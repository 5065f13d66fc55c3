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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/suppressd/suppressd/audience"
	"github.com/suppressd/suppressd/client"
)

// runFilter streams an audience list through the API and writes what may
// be targeted: one hash per line through /v1/filter, or an ad platform's
// CSV (--template, --columns) through /v1/filter/rows.
//
//	--in ─▶ (gunzip) ─▶ client ─▶ API ─▶ client ─▶ <out>.partial ──rename──▶ <out>
//	                        └─ checkpoints: progress, <out>.partial.json
//
// The answer is written to <out>.partial beside the target and renamed over
// it only once the stream is complete: a run that fails midway (a 503 under
// load, a cut connection, Ctrl-C) exits non-zero and leaves nothing under
// the target's name, so an exporter cannot upload half a list. Because the
// answer is in input order and the server says how far the input is
// answered (a checkpoint every chunk), a failed run of a file keeps its
// partial output and where it stopped, and --resume sends only the rest.
func runFilter(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("filter", flag.ContinueOnError)
	fs.SetOutput(io.err)
	var cf clientFlags
	cf.register(fs)
	j := filterJob{stdio: io}
	fs.StringVar(&j.inPath, "in", "-", "input, plain or gzip (- for stdin): one SHA-256 per line (hex or base64), or with --template/--columns a CSV with a header row")
	fs.StringVar(&j.outPath, "out", "-", "output: what may be targeted (- for stdout); written to <out>.partial and renamed when complete")
	typ := fs.String("type", client.TypeEmailSHA256, "one hash per line: email_sha256 or phone_sha256")
	fs.StringVar(&j.template, "template", "", "a CSV in an ad platform's format: "+strings.Join(audience.TemplateNames(), ", "))
	columns := fs.String("columns", "", "a CSV whose identifier columns are named: type:Header,... (types email, phone, user_id, maid, email_sha256, phone_sha256)")
	platform := fs.String("platform", "", "google, meta, tiktok, x, linkedin or snap (for metrics; default the template's)")
	channel := fs.String("channel", "ads", "channel of the upload")
	purpose := fs.String("purpose", "advertising", "purpose of the upload")
	topic := fs.String("topic", "", "list or topic")
	gz := fs.Bool("gzip", false, "compress the upload")
	fs.BoolVar(&j.resume, "resume", false, "continue a run that failed: keep its partial output and send only the input it had not had answered")
	showProgress := fs.Bool("progress", isTerminal(io.err), "show progress (default: when stderr is a terminal)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	typeSet := false
	fs.Visit(func(f *flag.Flag) { typeSet = typeSet || f.Name == "type" })
	j.rows = j.template != "" || *columns != ""
	switch {
	case j.template != "" && *columns != "":
		return usageError{errors.New("--template or --columns, not both")}
	case j.rows && typeSet:
		return usageError{errors.New("--type is for one hash per line; a CSV's columns come from --template or --columns")}
	case j.resume && (j.inPath == "-" || j.outPath == "-"):
		return usageError{errors.New("--resume needs --in and --out files: stdin cannot be read again")}
	}
	cols, err := parseColumnsFlag(*columns)
	if err != nil {
		return usageError{fmt.Errorf("--columns: %w", err)}
	}
	if j.c, err = cf.client(); err != nil {
		return err
	}
	j.lines = client.FilterRequest{Type: *typ, Platform: *platform, Channel: *channel, Purpose: *purpose, Topic: *topic, Namespace: cf.namespace, Gzip: *gz}
	j.rowsReq = client.FilterRowsRequest{Template: j.template, Columns: cols, Platform: *platform, Channel: *channel, Purpose: *purpose,
		Topic: *topic, Namespace: cf.namespace, Gzip: *gz}
	j.showProgress = *showProgress
	return j.run(ctx)
}

func parseColumnsFlag(spec string) ([]client.Column, error) {
	if spec == "" {
		return nil, nil
	}
	var cols []client.Column
	for _, entry := range strings.Split(spec, ",") {
		typ, header, ok := strings.Cut(entry, ":")
		if !ok || strings.TrimSpace(typ) == "" || strings.TrimSpace(header) == "" {
			return nil, fmt.Errorf("%q: want type:Header", entry)
		}
		cols = append(cols, client.Column{Type: strings.TrimSpace(typ), Header: strings.TrimSpace(header)})
	}
	return cols, nil
}

// filterJob is one run of the filter command.
type filterJob struct {
	stdio
	c                 *client.Client
	inPath, outPath   string
	rows, resume      bool
	template          string
	lines             client.FilterRequest
	rowsReq           client.FilterRowsRequest
	showProgress      bool
	partial, statePth string
}

// filterState is what a failed run leaves beside its partial output for
// --resume: the run it was, and its last checkpoint. It holds no
// identifier.
type filterState struct {
	Version int    `json:"version"`
	Mode    string `json:"mode"`  // "lines" or "rows"
	Query   string `json:"query"` // the request's parameters: a resumed run must ask the same
	// The input: a resumed run must read the same file.
	Input        string    `json:"input"`
	InputSize    int64     `json:"input_size"`
	InputModTime time.Time `json:"input_mtime"`
	// HeaderBytes and HeaderLines are the CSV header row's extent (rows):
	// a resumed run sends it again, then the input from the checkpoint on.
	HeaderBytes int64 `json:"header_bytes,omitempty"`
	HeaderLines int64 `json:"header_lines,omitempty"`
	// The last checkpoint, for the whole input: counts, how far the input
	// is answered, how many bytes of the partial output belong to it.
	client.FilterCheckpoint
	MalformedLines []int64 `json:"malformed_lines,omitempty"`
}

func (j *filterJob) unit() string {
	if j.rows {
		return "rows"
	}
	return "lines"
}

// query is the request's parameters, in a stable form.
func (j *filterJob) query() string {
	q := url.Values{}
	add := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if j.rows {
		add("template", j.rowsReq.Template)
		var cols []string
		for _, c := range j.rowsReq.Columns {
			cols = append(cols, c.Type+":"+c.Header)
		}
		add("columns", strings.Join(cols, ","))
	} else {
		add("type", j.lines.Type)
	}
	add("channel", j.lines.Channel)
	add("purpose", j.lines.Purpose)
	add("topic", j.lines.Topic)
	add("namespace", j.lines.Namespace)
	return q.Encode()
}

func (j *filterJob) run(ctx context.Context) (err error) {
	in, err := openFilterInput(j.inPath, j.in)
	if err != nil {
		return err
	}
	defer in.close()
	resumable := j.inPath != "-" && j.outPath != "-"
	state := filterState{Version: 1, Mode: j.unit(), Query: j.query()}
	if resumable {
		abs, _ := filepath.Abs(j.inPath)
		state.Input, state.InputSize, state.InputModTime = abs, in.info.Size(), in.info.ModTime().UTC()
	}

	// The input as sent: a CSV's header row is found first (a resumed
	// run sends it again); a resumed run skips what is answered.
	body := in.r
	var header []byte
	if j.rows {
		if body, header, state.HeaderLines, err = headerExtent(body); err != nil {
			return fmt.Errorf("%s: %w", j.inPath, err)
		}
		state.HeaderBytes = int64(len(header))
	}
	var base filterState // the earlier run's, when resuming
	if j.resume {
		if base, err = j.loadState(state); err != nil {
			return err
		}
		state.MalformedLines = base.MalformedLines
		if body, err = skipAnswered(body, header, base.InputBytes); err != nil {
			return fmt.Errorf("%s: %w", j.inPath, err)
		}
	}

	// The output: the partial file beside the target, or stdout.
	var (
		dst    io.Writer
		bw     *bufio.Writer
		f      *os.File
		closed bool
	)
	if j.outPath == "-" {
		bw = bufio.NewWriterSize(j.out, 256<<10)
	} else {
		j.partial, j.statePth = j.outPath+".partial", j.outPath+".partial.json"
		if f, err = j.openPartial(base); err != nil {
			return err
		}
		defer func() {
			if !closed {
				_ = f.Close()
			}
		}()
		bw = bufio.NewWriterSize(f, 256<<10)
	}
	dst = bw
	if j.resume && j.rows {
		// The server echoes the header row again; the partial output
		// has it already.
		dst = &skipWriter{w: bw, n: int64(len(header))}
	}

	// Checkpoints: relative to this run's input, made absolute.
	shift := client.FilterCheckpoint{InputBytes: base.InputBytes, InputLines: base.InputLines, OutputBytes: base.OutputBytes}
	if j.resume && j.rows {
		shift.InputBytes -= state.HeaderBytes
		shift.InputLines -= state.HeaderLines
		shift.OutputBytes -= state.HeaderBytes
	}
	absolute := func(cp client.FilterCheckpoint) client.FilterCheckpoint {
		return client.FilterCheckpoint{
			Total: base.Total + cp.Total, Allowed: base.Allowed + cp.Allowed, Suppressed: base.Suppressed + cp.Suppressed, Malformed: base.Malformed + cp.Malformed,
			InputBytes: shift.InputBytes + cp.InputBytes, InputLines: shift.InputLines + cp.InputLines, OutputBytes: shift.OutputBytes + cp.OutputBytes,
		}
	}
	var (
		latest    *client.FilterCheckpoint
		persisted time.Time
	)
	sent := &countingReader{r: body}
	prog := &filterProgress{unit: j.unit(), size: in.size, start: time.Now(), read: sent, base: base.Total, readBase: base.InputBytes}
	prog.answered.Store(base.Total)
	prog.inBytes.Store(base.InputBytes)
	checkpoint := func(cp client.FilterCheckpoint) {
		abs := absolute(cp)
		latest = &abs
		for _, l := range cp.MalformedLines {
			if len(state.MalformedLines) < 100 {
				state.MalformedLines = append(state.MalformedLines, l+shift.InputLines)
			}
		}
		prog.answered.Store(abs.Total)
		prog.inBytes.Store(abs.InputBytes)
		// Keep the resume state current, the first time at once and
		// then once a second: a run killed outright can be resumed too.
		if resumable && time.Since(persisted) >= time.Second {
			if bw.Flush() == nil {
				state.FilterCheckpoint = abs
				_ = j.saveState(state)
			}
			persisted = time.Now()
		}
	}
	redraw := startRedraw(j.err, j.showProgress, prog.line)
	var sum client.FilterSummary
	if j.rows {
		req := j.rowsReq
		req.Checkpoint = checkpoint
		sum, err = j.c.FilterRows(ctx, req, sent, dst)
	} else {
		req := j.lines
		req.Checkpoint = checkpoint
		sum, err = j.c.Filter(ctx, req, sent, dst)
	}
	redraw.end()
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && f != nil {
		if err = f.Sync(); err == nil {
			err = f.Close()
			closed = true
		}
		if err == nil {
			err = os.Rename(j.partial, j.outPath)
		}
	}
	if err != nil {
		return j.failed(err, f, bw, resumable, latest, state, base)
	}
	if j.statePth != "" {
		_ = os.Remove(j.statePth)
	}

	total := base.Total + sum.Total
	el := time.Since(prog.start)
	fmt.Fprintf(j.err, "filtered %d %s in %s (%.0f %s/s): %d allowed, %d suppressed, %d malformed\n",
		total, j.unit(), el.Round(time.Millisecond), float64(sum.Total)/max(el.Seconds(), 1e-9), j.unit(),
		base.Allowed+sum.Allowed, base.Suppressed+sum.Suppressed, base.Malformed+sum.Malformed)
	if lines := mergeLines(base.MalformedLines, sum.MalformedLines, shift.InputLines); len(lines) > 0 {
		fmt.Fprintf(j.err, "malformed rows (dropped) start on lines %s\n", joinLines(lines))
	}
	if j.resume {
		fmt.Fprintf(j.err, "resumed after %d %s answered by the earlier run\n", base.Total, j.unit())
	}
	return nil
}

// failed cleans up after a run that did not complete: nothing is left
// under the target's name. A run of a file keeps its output up to the last
// checkpoint, and where that is, for --resume; any other run leaves
// nothing behind.
func (j *filterJob) failed(err error, f *os.File, bw *bufio.Writer, resumable bool, latest *client.FilterCheckpoint, state, base filterState) error {
	if f == nil {
		return fmt.Errorf("filter: %w (the output is incomplete; do not upload it)", err)
	}
	_ = bw.Flush()
	if resumable && latest == nil && j.resume {
		latest = &base.FilterCheckpoint // nothing more answered: keep the earlier run's
	}
	if resumable && latest != nil {
		state.FilterCheckpoint = *latest
		if terr := f.Truncate(latest.OutputBytes); terr == nil {
			if serr := j.saveState(state); serr == nil {
				_ = f.Close()
				return fmt.Errorf("filter: %w\nnothing was written to %s; %d of the input's %s were answered: run again with --resume to filter the rest",
					err, j.outPath, latest.Total, j.unit())
			}
		}
	}
	_ = f.Close()
	_ = os.Remove(j.partial)
	_ = os.Remove(j.statePth)
	return fmt.Errorf("filter: %w\nnothing was written to %s", err, j.outPath)
}

// openPartial creates the partial output, or reopens a failed run's at its
// last checkpoint.
func (j *filterJob) openPartial(base filterState) (*os.File, error) {
	if !j.resume {
		if _, err := os.Stat(j.statePth); err == nil {
			fmt.Fprintf(j.err, "starting over: the partial output of an earlier run (%s) is discarded; --resume would have continued it\n", j.partial)
		}
		_ = os.Remove(j.statePth)
		return os.OpenFile(j.partial, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	}
	f, err := os.OpenFile(j.partial, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("--resume: %w", err)
	}
	if st, err := f.Stat(); err != nil || st.Size() < base.OutputBytes {
		_ = f.Close()
		return nil, fmt.Errorf("--resume: %s is shorter than its checkpoint says; start over without --resume", j.partial)
	}
	if err := f.Truncate(base.OutputBytes); err != nil {
		_ = f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// loadState reads a failed run's state and checks that this run is the
// same: the same input file, unchanged, and the same request.
func (j *filterJob) loadState(want filterState) (filterState, error) {
	j.partial, j.statePth = j.outPath+".partial", j.outPath+".partial.json"
	b, err := os.ReadFile(j.statePth)
	if errors.Is(err, os.ErrNotExist) {
		return filterState{}, usageError{fmt.Errorf("--resume: no failed run to resume (no %s)", j.statePth)}
	}
	if err != nil {
		return filterState{}, err
	}
	var s filterState
	if err := json.Unmarshal(b, &s); err != nil {
		return filterState{}, fmt.Errorf("--resume: %s: %w", j.statePth, err)
	}
	switch {
	case s.Version != want.Version || s.Mode != want.Mode:
		return filterState{}, usageError{fmt.Errorf("--resume: the earlier run filtered %s, this one %s; start over without --resume", s.Mode, want.Mode)}
	case s.Input != want.Input || s.InputSize != want.InputSize || !s.InputModTime.Equal(want.InputModTime):
		return filterState{}, usageError{fmt.Errorf("--resume: the input is not the earlier run's (%s), or it changed since; start over without --resume", s.Input)}
	case s.Query != want.Query:
		return filterState{}, usageError{fmt.Errorf("--resume: the earlier run asked %q, this one %q; start over without --resume", s.Query, want.Query)}
	case s.HeaderBytes != want.HeaderBytes:
		return filterState{}, usageError{errors.New("--resume: the header row changed; start over without --resume")}
	}
	return s, nil
}

func (j *filterJob) saveState(s filterState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := j.statePth + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, j.statePth)
}

// filterInput is the decoded input and what is known of it.
type filterInput struct {
	r     io.Reader
	size  int64 // bytes of the decoded input when known (a plain file), else 0
	info  os.FileInfo
	close func()
}

// openFilterInput opens a file or stdin, unzipping gzip (recognised by
// its magic bytes).
func openFilterInput(name string, stdin io.Reader) (*filterInput, error) {
	in := &filterInput{r: stdin, close: func() {}}
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		if in.info, err = f.Stat(); err != nil {
			_ = f.Close()
			return nil, err
		}
		in.r, in.size, in.close = f, in.info.Size(), func() { _ = f.Close() }
	}
	br := bufio.NewReaderSize(in.r, 256<<10)
	in.r = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			in.close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		closeFile := in.close
		// The compressed size says little about the input's: progress
		// shows bytes read and a rate instead of a bar.
		in.r, in.size, in.close = zr, 0, func() { _ = zr.Close(); closeFile() }
	}
	return in, nil
}

// headerExtent finds a CSV's header row (its first non-blank record, as
// the server reads it) and returns the input whole again, the header's
// bytes (blank lines before it included) and its line ends.
func headerExtent(r io.Reader) (io.Reader, []byte, int64, error) {
	var seen bytes.Buffer
	sc := audience.NewScanner(io.TeeReader(r, &seen), 0)
	for {
		rec, err := sc.Next()
		if errors.Is(err, io.EOF) {
			break // an empty file: the server says so
		}
		if err != nil {
			return nil, nil, 0, err
		}
		if !rec.Blank() {
			break
		}
	}
	header := bytes.Clone(seen.Bytes()[:sc.Offset()])
	return io.MultiReader(bytes.NewReader(seen.Bytes()), r), header, sc.Lines(), nil
}

// skipAnswered drops the input an earlier run had answered: the first n
// bytes, but a CSV's header row is sent again.
func skipAnswered(r io.Reader, header []byte, n int64) (io.Reader, error) {
	skip := n
	if header != nil {
		skip -= int64(len(header))
		if _, err := io.CopyN(io.Discard, r, int64(len(header))); err != nil {
			return nil, err
		}
	}
	if _, err := io.CopyN(io.Discard, r, skip); err != nil {
		return nil, fmt.Errorf("shorter than the earlier run's checkpoint: %w", err)
	}
	if header != nil {
		return io.MultiReader(bytes.NewReader(header), r), nil
	}
	return r, nil
}

// skipWriter drops the first n bytes written.
type skipWriter struct {
	w io.Writer
	n int64
}

func (s *skipWriter) Write(p []byte) (int, error) {
	total := len(p)
	if s.n > 0 {
		k := min(int64(len(p)), s.n)
		s.n -= k
		p = p[k:]
	}
	if len(p) == 0 {
		return total, nil
	}
	_, err := s.w.Write(p)
	return total, err
}

// mergeLines puts an earlier run's malformed lines and this run's (shifted
// to the whole input's numbering) together, at most as many as the server
// reports.
func mergeLines(earlier, now []int64, shift int64) []int64 {
	out := append([]int64(nil), earlier...)
	for _, l := range now {
		if len(out) == 100 {
			break
		}
		out = append(out, l+shift)
	}
	return out
}

func joinLines(ls []int64) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprint(l)
	}
	return strings.Join(parts, ", ")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r     io.Reader
	bytes atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bytes.Add(int64(n))
	return n, err
}

// filterProgress is the filter's progress line. It counts what the server
// has answered (from its checkpoints), not what was uploaded: with a known
// input size, a bar of the input answered and the time left; without one
// (gzip, stdin), the bytes read and their rate.
type filterProgress struct {
	unit              string
	size              int64
	start             time.Time
	read              *countingReader
	base, readBase    int64 // answered, and input bytes, before this run
	answered, inBytes atomic.Int64
}

func (p *filterProgress) line() string {
	el := max(time.Since(p.start).Seconds(), 1e-9)
	answered := p.answered.Load()
	rate := float64(answered-p.base) / el
	if p.size <= 0 {
		read := p.read.bytes.Load()
		return fmt.Sprintf("%d %s answered  %.0f %s/s  %s read  %s/s", answered, p.unit, rate, p.unit, megabytes(p.readBase+read), megabytes(int64(float64(read)/el)))
	}
	done := p.inBytes.Load()
	frac := min(1, float64(done)/float64(p.size))
	eta := "?"
	if fracNow := float64(done-p.readBase) / float64(p.size); fracNow > 0 {
		eta = time.Duration(el * (1 - frac) / fracNow * float64(time.Second)).Round(time.Second).String()
	}
	bar := strings.Repeat("#", int(frac*30)) + strings.Repeat(".", 30-int(frac*30))
	return fmt.Sprintf("[%s] %5.1f%%  %d %s answered  %.0f %s/s  ETA %s", bar, 100*frac, answered, p.unit, rate, p.unit, eta)
}

func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
