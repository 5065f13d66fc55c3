package api

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/suppressd/suppressd/importer"
	"github.com/suppressd/suppressd/internal/httplimit"
	"github.com/suppressd/suppressd/suppression"
)

// maxListedRejections bounds the rejected rows listed in an import's answer;
// the count is always complete.
const maxListedRejections = 1000

// importWorkers is how many events an import has in flight at once.
const importWorkers = 8

type importRejection struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

type importResponse struct {
	Format    string            `json:"format"`
	Published int               `json:"published"`
	Rejected  int               `json:"rejected"`
	Rows      []importRejection `json:"rejected_rows"`
}

// importList publishes a provider's suppression export (the body) as
// suppress events through the same pipeline as `suppressd import`
// (importer.Run): one event per good row, origin system, source
// /import/<format>, ids keyed with the pepper and stable across re-imports;
// the bad rows are listed by line and reason, never by value.
func (s *Server) importList(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Publisher == nil {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "publishing is not enabled on this server"}
	}
	q := r.URL.Query()
	format, err := importer.ParseFormat(q.Get("format"))
	if err != nil {
		return badRequest("format", "format: %v", err)
	}
	ns, err := parseNamespace("namespace", q.Get("namespace"))
	if err != nil {
		return err
	}
	var scopes []suppression.Scope
	for _, raw := range q["scope"] {
		for _, one := range strings.Split(raw, ",") {
			sc, err := suppression.ParseScope(strings.TrimSpace(one))
			if err != nil {
				return badRequest("scope", "scope: %v", err)
			}
			scopes = append(scopes, sc)
		}
	}
	// The limit bounds what crosses the wire and, when the body is gzip,
	// what it expands to: a gzip of zeros expands a thousandfold.
	limit := s.opts.MaxImportBody
	body := io.Reader(http.MaxBytesReader(w, r.Body, limit))
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(body)
		if err != nil {
			return badRequest("", "the body is not gzip")
		}
		defer gz.Close()
		body = httplimit.LimitReader(gz, limit)
	default:
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Encoding " + enc + " is not supported; use gzip or none"}
	}

	resp := importResponse{Format: string(format), Rows: []importRejection{}}
	started := time.Now()
	res, err := importer.Run(r.Context(), body, s.opts.Publisher, importer.RunOptions{
		Parse:       importer.Options{Format: format, Kind: q.Get("kind"), Normalizer: s.opts.Normalizer, Now: started},
		Events:      importer.EventOptions{Namespace: ns, Scopes: scopes, Keyer: s.opts.Keyer},
		Concurrency: importWorkers,
		Reject: func(rej importer.Rejection) {
			if len(resp.Rows) < maxListedRejections {
				resp.Rows = append(resp.Rows, importRejection{Line: rej.Line, Reason: rej.Reason})
			}
		},
	})
	resp.Published, resp.Rejected = int(res.Published), int(res.Rejected)
	if errors.Is(err, importer.ErrPublish) {
		s.log.Warn("import stopped: publish failed", "format", format, "published", resp.Published, "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: s.opts.RetryAfter,
			Message: fmt.Sprintf("Kafka did not acknowledge an event after %d were published; importing the same file again is safe", resp.Published)}
	}
	if err != nil {
		var (
			maxErr   *http.MaxBytesError
			bombErr  *httplimit.TooLargeError
			limitErr *importer.LimitError
		)
		switch {
		case errors.As(err, &maxErr):
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("an import is at most %d bytes; split the file", limit)}
		case errors.As(err, &bombErr):
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("an import is at most %d bytes once decompressed; split the file", limit)}
		case errors.As(err, &limitErr):
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: limitErr.Error()}
		case httplimit.IsTimeout(err):
			return tooSlow(err)
		case errors.Is(err, importer.ErrFormat):
			return badRequest("format", "%v", err)
		}
		return badRequest("", "reading the export failed (a broken upload, or not gzip)")
	}
	s.log.Info("import", "format", format, "published", resp.Published, "rejected", resp.Rejected, "took", time.Since(started))
	writeJSON(w, http.StatusOK, resp)
	return nil
}
