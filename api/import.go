package api

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/suppressd/suppressd/importer"
	"github.com/suppressd/suppressd/suppression"
)

// maxListedRejections bounds the rejected rows listed in an import's answer;
// the count is always complete.
const maxListedRejections = 1000

// maxImportBody bounds an import's body (compressed, when gzip).
const maxImportBody = 256 << 20

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
// suppress events, as `suppressd import` does: one event per good row,
// origin system, source /import/<format>, ids stable across re-imports; the
// bad rows are listed by line and reason, never by value.
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
	body := io.Reader(http.MaxBytesReader(w, r.Body, maxImportBody))
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(body)
		if err != nil {
			return badRequest("", "the body is not gzip")
		}
		defer gz.Close()
		body = gz
	default:
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Encoding " + enc + " is not supported; use gzip or none"}
	}

	var (
		resp    = importResponse{Format: string(format), Rows: []importRejection{}}
		mu      sync.Mutex
		pubErr  error
		work    = make(chan suppression.Event)
		wg      sync.WaitGroup
		eo      = importer.EventOptions{Namespace: ns, Scopes: scopes}
		ctx     = r.Context()
		started = time.Now()
	)
	for i := 0; i < importWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				err := s.opts.Publisher.Publish(ctx, e)
				mu.Lock()
				if err != nil && pubErr == nil {
					pubErr = err
				} else if err == nil {
					resp.Published++
				}
				mu.Unlock()
			}
		}()
	}
	perr := importer.Parse(body, importer.Options{Format: format, Kind: q.Get("kind"), Normalizer: s.opts.Normalizer},
		func(row importer.Row) error {
			mu.Lock()
			failed := pubErr
			mu.Unlock()
			if failed != nil {
				return failed
			}
			select {
			case work <- importer.Event(format, row, eo):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		func(rej importer.Rejection) error {
			mu.Lock()
			defer mu.Unlock()
			resp.Rejected++
			if len(resp.Rows) < maxListedRejections {
				resp.Rows = append(resp.Rows, importRejection{Line: rej.Line, Reason: rej.Reason})
			}
			return nil
		})
	close(work)
	wg.Wait()
	if pubErr != nil {
		s.log.Warn("import stopped: publish failed", "format", format, "published", resp.Published, "err", pubErr)
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: s.opts.RetryAfter,
			Message: fmt.Sprintf("Kafka did not acknowledge an event after %d were published; importing the same file again is safe", resp.Published)}
	}
	if perr != nil {
		var maxErr *http.MaxBytesError
		if errors.As(perr, &maxErr) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("an import is at most %d bytes; split the file", maxImportBody)}
		}
		if errors.Is(perr, importer.ErrFormat) {
			return badRequest("format", "%v", perr)
		}
		return badRequest("", "reading the export: %v", perr)
	}
	s.log.Info("import", "format", format, "published", resp.Published, "rejected", resp.Rejected, "took", time.Since(started))
	writeJSON(w, http.StatusOK, resp)
	return nil
}
