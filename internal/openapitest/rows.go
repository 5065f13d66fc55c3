package openapitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/suppressd/suppressd/audience"
)

// csvRecords splits CSV into its records as the server reads them.
func csvRecords(b []byte) []audience.Record {
	sc := audience.NewScanner(bytes.NewReader(b), 0)
	var out []audience.Record
	for {
		r, err := sc.Next()
		if err != nil {
			return out
		}
		out = append(out, r.Clone())
	}
}

// checkFilterRows checks a 200 answer of /v1/filter/rows (see Validate).
func checkFilterRows(req *http.Request, reqBody []byte, resp *http.Response, body []byte) error {
	q := req.URL.Query()
	progress := q.Get("progress") == "true" || q.Get("progress") == "1"
	summaryAsked := progress || q.Get("summary") == "true" || q.Get("summary") == "1"
	var errs []error

	// Split the server's own lines from the rows.
	var (
		data     []byte
		controls []string
		at       []int // len(data) before each control line
	)
	if progress {
		rest := body
		for len(rest) > 0 {
			i := bytes.IndexByte(rest, 0)
			if i < 0 {
				data = append(data, rest...)
				break
			}
			data = append(data, rest[:i]...)
			end := bytes.IndexByte(rest[i:], '\n')
			if end < 0 {
				errs = append(errs, errors.New("a NUL-prefixed line without a line end"))
				break
			}
			controls = append(controls, string(rest[i+1:i+end]))
			at = append(at, len(data))
			rest = rest[i+end+1:]
		}
	} else {
		// The last line, if it is the server's.
		data = body
		trimmed := bytes.TrimSuffix(body, []byte("\n"))
		i := bytes.LastIndexByte(trimmed, '\n')
		if last := string(trimmed[i+1:]); rowsSummary.MatchString(last) || strings.HasPrefix(last, "# error=") {
			controls = append(controls, last)
			data = body[:i+1]
		}
	}

	var summary []string
	failed := false
	for i, c := range controls {
		last := i == len(controls)-1
		switch {
		case checkpointLine.MatchString(c) && progress && !last:
			m := checkpointLine.FindStringSubmatch(c)
			if n, _ := strconv.Atoi(m[7]); n != at[i] {
				errs = append(errs, fmt.Errorf("checkpoint %q after %d bytes of rows", c, at[i]))
			}
		case last && (c == "# error=unavailable" || c == "# error=read"):
			failed = true
		case last && rowsSummary.MatchString(c):
			summary = rowsSummary.FindStringSubmatch(c)
		default:
			errs = append(errs, fmt.Errorf("unexpected line %q", c))
		}
	}
	if summaryAsked && summary == nil && !failed {
		errs = append(errs, errors.New("summary=true but no summary line"))
	}
	if !summaryAsked && summary != nil {
		errs = append(errs, errors.New("a summary line that was not asked for: a platform would take it for a row"))
	}

	// The rows: the request's header, then some of its rows, as sent.
	in := csvRecords(reqBody)
	in = slices.DeleteFunc(in, func(r audience.Record) bool { return r.Blank() })
	out := csvRecords(data)
	if len(in) == 0 || len(out) == 0 || !bytes.Equal(in[0].Raw, out[0].Raw) {
		errs = append(errs, errors.New("the answer does not start with the request's header row, byte for byte"))
		return errors.Join(errs...)
	}
	// The summary line has a line of its own: after a last row without a
	// line end the server adds one, which is not part of the row.
	if summary != nil && !progress && len(out) > 1 {
		last, lastIn := &out[len(out)-1], in[len(in)-1].Raw
		if !bytes.HasSuffix(lastIn, []byte("\n")) && bytes.Equal(last.Raw, append(bytes.Clone(lastIn), '\n')) {
			last.Raw = lastIn
		}
	}
	j := 1
	for _, r := range out[1:] {
		if r.Problem != "" || r.NumFields() != in[0].NumFields() {
			errs = append(errs, fmt.Errorf("an echoed row is malformed (%s, %d fields): malformed rows are never echoed", r.Problem, r.NumFields()))
		}
		for j < len(in) && !bytes.Equal(in[j].Raw, r.Raw) {
			j++
		}
		if j == len(in) {
			errs = append(errs, fmt.Errorf("row %q is not a row of the request as sent, or not in input order", truncate(string(r.Raw), 80)))
			break
		}
		j++
	}
	echoed := len(out) - 1

	// The counts: trailers always, the summary when asked for.
	values := make([]string, len(trailers))
	for i, name := range trailers {
		values[i] = resp.Trailer.Get(name)
	}
	if failed {
		for i, v := range values {
			if v != "" {
				errs = append(errs, fmt.Errorf("trailer %s is %q after a mid-stream failure, want none", trailers[i], v))
			}
		}
		return errors.Join(errs...)
	}
	if n, err := strconv.Atoi(values[1]); err != nil || n != echoed {
		errs = append(errs, fmt.Errorf("trailer Suppressd-Allowed is %q, but %d rows are echoed", values[1], echoed))
	}
	if summary != nil {
		for i, name := range trailers {
			if values[i] != summary[i+1] {
				errs = append(errs, fmt.Errorf("trailer %s is %q, want %q as in the summary line", name, values[i], summary[i+1]))
			}
		}
		if got := resp.Trailer.Get("Suppressd-Malformed-Lines"); got != summary[6] {
			errs = append(errs, fmt.Errorf("trailer Suppressd-Malformed-Lines is %q, want %q as in the summary line", got, summary[6]))
		}
	}
	if lines := resp.Trailer.Get("Suppressd-Malformed-Lines"); lines != "" {
		starts := map[string]bool{}
		for _, r := range in[1:] {
			starts[strconv.FormatInt(r.Line, 10)] = true
		}
		for _, l := range strings.Split(lines, ",") {
			if !starts[l] {
				errs = append(errs, fmt.Errorf("Suppressd-Malformed-Lines names line %s, where no row of the request starts", l))
			}
		}
	}
	return errors.Join(errs...)
}

// checkRowsError checks that an error answer to /v1/filter/rows repeats no
// value of the request's rows.
func checkRowsError(reqBody, body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil // not the envelope: the schema check has said so
	}
	texts := errorTexts(v)
	recs := csvRecords(reqBody)
	var errs []error
	for _, r := range recs[min(1, len(recs)):] {
		if r.Problem != "" {
			continue
		}
		for i := 0; i < r.NumFields(); i++ {
			val := strings.TrimSpace(string(r.Field(i)))
			if len(val) < minLeakLen {
				continue
			}
			for _, t := range texts {
				if strings.Contains(t, val) {
					errs = append(errs, fmt.Errorf("an error message repeats the row value %q", val))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
