package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/suppressd/suppressd/suppression"
)

// maxFilterLine bounds one line of a filter stream; a SHA-256 is at most 64
// characters, so anything near this is malformed anyway.
const maxFilterLine = 1024

// Filter trailers, also repeated in the summary line.
const (
	trailerTotal      = "Suppressd-Total"
	trailerAllowed    = "Suppressd-Allowed"
	trailerSuppressed = "Suppressd-Suppressed"
	trailerMalformed  = "Suppressd-Malformed"
)

type filterParams struct {
	ns       string
	kind     suppression.KeyKind
	idType   suppression.IDType
	platform string
	send     suppression.Send
}

func parseFilterParams(r *http.Request) (filterParams, error) {
	q := r.URL.Query()
	var p filterParams
	switch t := suppression.IDType(q.Get("type")); t {
	case suppression.IDEmailSHA256, suppression.IDPhoneSHA256:
		p.idType, p.kind = t, t.Kind()
	case "":
		return p, badRequest("type", "type is required: email_sha256 or phone_sha256")
	default:
		return p, badRequest("type", "type %q: want email_sha256 or phone_sha256", string(t))
	}
	p.platform = q.Get("platform")
	if p.platform != "" && !slices.Contains(suppression.Platforms, p.platform) {
		return p, badRequest("platform", "platform %q: want one of %s", p.platform, strings.Join(suppression.Platforms, ", "))
	}
	channel, purpose := q.Get("channel"), q.Get("purpose")
	if channel == "" {
		channel = string(suppression.ChannelAds)
	}
	if purpose == "" {
		purpose = string(suppression.PurposeAdvertising)
	}
	var err error
	if p.send, err = parseSend("", channel, purpose, q.Get("topic")); err != nil {
		return p, err
	}
	p.ns, err = parseNamespace("namespace", q.Get("namespace"))
	return p, err
}

// filter streams a hashed list through the suppression list: every line
// that may be targeted comes back, in order, as it was sent. Memory is
// bounded by one chunk of lines, however long the list.
func (s *Server) filter(w http.ResponseWriter, r *http.Request) error {
	p, err := parseFilterParams(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/octet-stream") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send text/plain, one hash per line"}
	}
	body := io.Reader(r.Body)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			return badRequest("", "the body is not gzip")
		}
		defer gz.Close()
		body = gz
	default:
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Encoding " + enc + " is not supported; use gzip or none"}
	}
	// Read the request while the response streams (HTTP/1.1 does not by
	// default once the response has started).
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()

	in := bufio.NewReaderSize(body, 64<<10)
	var (
		total, allowed, suppressed, malformed int
		started                               bool
		lines                                 = make([][]byte, 0, s.opts.FilterChunk)
		keys                                  = make([]suppression.MatchKey, 0, s.opts.FilterChunk)
		valid                                 = make([]bool, 0, s.opts.FilterChunk)
		arena                                 = make([]byte, 0, s.opts.FilterChunk*72)
		out                                   = bufio.NewWriterSize(w, 64<<10)
	)
	start := func() {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Trailer", strings.Join([]string{trailerTotal, trailerAllowed, trailerSuppressed, trailerMalformed}, ", "))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	flushChunk := func() error {
		if len(lines) == 0 {
			return nil
		}
		recs, err := s.read(r.Context(), p.ns, keys)
		if err != nil {
			if !started {
				return err // nothing sent yet: a clean 503
			}
			_, _ = out.WriteString("# error=unavailable\n")
			_ = out.Flush()
			return err
		}
		if !started {
			start()
		}
		ki := 0
		for i, line := range lines {
			if !valid[i] {
				continue
			}
			rec := recs[ki]
			ki++
			if rec != nil {
				if _, blocked := suppression.Decide(p.send, holdings(recs[ki-1:ki])); blocked {
					suppressed++
					continue
				}
			}
			allowed++
			out.Write(line)
			out.WriteByte('\n')
		}
		if err := out.Flush(); err != nil {
			return err
		}
		_ = rc.Flush()
		lines, keys, valid, arena = lines[:0], keys[:0], valid[:0], arena[:0]
		return nil
	}
	for {
		line, tooLong, err := readLine(in)
		if len(line) > 0 || tooLong {
			total++
			var ok bool
			var k suppression.MatchKey
			if !tooLong {
				if h, perr := suppression.ParseSHA256(p.idType, string(line)); perr == nil {
					k, ok = suppression.MatchKey{Kind: p.kind, Hash: h}, true
				}
			}
			if !ok {
				malformed++
			} else {
				keys = append(keys, k)
			}
			off := len(arena)
			arena = append(arena, line...)
			lines = append(lines, arena[off:len(arena):len(arena)])
			valid = append(valid, ok)
			if len(lines) == s.opts.FilterChunk {
				if ferr := flushChunk(); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if started {
				_, _ = out.WriteString("# error=read\n")
				_ = out.Flush()
			}
			return badRequest("", "reading the body: %v", err)
		}
	}
	if err := flushChunk(); err != nil {
		return err
	}
	if !started {
		start()
	}
	s.m.filtered.WithLabelValues(p.platform, "allowed").Add(float64(allowed))
	s.m.filtered.WithLabelValues(p.platform, "suppressed").Add(float64(suppressed))
	s.m.filtered.WithLabelValues(p.platform, "malformed").Add(float64(malformed))
	fmt.Fprintf(out, "# total=%d allowed=%d suppressed=%d malformed=%d\n", total, allowed, suppressed, malformed)
	if err := out.Flush(); err != nil {
		return err
	}
	h := w.Header()
	h.Set(trailerTotal, strconv.Itoa(total))
	h.Set(trailerAllowed, strconv.Itoa(allowed))
	h.Set(trailerSuppressed, strconv.Itoa(suppressed))
	h.Set(trailerMalformed, strconv.Itoa(malformed))
	return nil
}

// readLine returns the next line without its end and surrounding spaces. A
// line longer than maxFilterLine is skipped and reported as tooLong (it is
// counted malformed, and never echoed).
func readLine(in *bufio.Reader) (line []byte, tooLong bool, err error) {
	line, err = in.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxFilterLine {
		for err == bufio.ErrBufferFull {
			_, err = in.ReadSlice('\n')
		}
		return nil, true, err
	}
	return bytes.TrimSpace(line), false, err
}
