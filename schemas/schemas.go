// Package schemas holds the wire format of suppressd's events: CloudEvents
// 1.0 in JSON structured mode, with a versioned JSON Schema for the data of
// each event type, embedded in the binary. Validator checks raw events against
// those schemas and decodes them into the domain's suppression.Event.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/valyala/fastjson"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/suppressd/suppressd/suppression"
)

// Files holds the JSON Schemas: events/cloudevent.json for the envelope and
// events/v1/<type>.json for the data of each event type.
//
//go:embed events
var Files embed.FS

// SpecVersion is the CloudEvents version of every event.
const SpecVersion = "1.0"

// DataVersion is the version of the data schemas in use.
const DataVersion = "v1"

const (
	typePrefix = "io.suppressd."
	baseURL    = "https://schemas.suppressd.dev/"
	// MaxEventBytes bounds the size of one encoded event; anything larger is
	// rejected before it is parsed.
	MaxEventBytes = 64 << 10
)

// TypeName returns the CloudEvents type of a domain event type
// ("io.suppressd.unsubscribe.v1").
func TypeName(t suppression.EventType) string {
	return typePrefix + string(t) + "." + DataVersion
}

// DataSchemaURL returns the dataschema URI of a domain event type.
func DataSchemaURL(t suppression.EventType) string {
	return baseURL + "events/" + DataVersion + "/" + string(t) + ".json"
}

// ParseTypeName maps a CloudEvents type back to the domain's.
func ParseTypeName(s string) (suppression.EventType, bool) {
	name, ok := strings.CutPrefix(s, typePrefix)
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "."+DataVersion)
	t := suppression.EventType(name)
	return t, ok && t.Valid()
}

// Violation is one thing wrong with an event: where (a JSON pointer into the
// event) and what.
type Violation struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Error lists every violation found in an event. It wraps
// suppression.ErrInvalidEvent. No message carries an identifier's value.
type Error struct {
	Violations []Violation
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid event:")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(" ")
		if v.Path == "" {
			b.WriteString("(root)")
		} else {
			b.WriteString(v.Path)
		}
		b.WriteString(": ")
		b.WriteString(v.Message)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, suppression.ErrInvalidEvent) hold.
func (e *Error) Unwrap() error { return suppression.ErrInvalidEvent }

// Validator validates and decodes events. It is safe for concurrent use.
type Validator struct {
	envelope *jsonschema.Schema
	data     map[suppression.EventType]*jsonschema.Schema
	printer  *message.Printer
	parsers  fastjson.ParserPool
	fields   map[suppression.EventType]dataFields
}

// New compiles the embedded schemas.
func New() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	err := fs.WalkDir(Files, "events", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".json" {
			return err
		}
		b, err := Files.ReadFile(p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return c.AddResource(baseURL+p, doc)
	})
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	v := &Validator{
		data:    map[suppression.EventType]*jsonschema.Schema{},
		printer: message.NewPrinter(language.English),
		fields:  map[suppression.EventType]dataFields{},
	}
	if v.envelope, err = c.Compile(baseURL + "events/cloudevent.json"); err != nil {
		return nil, fmt.Errorf("compile envelope schema: %w", err)
	}
	for _, t := range suppression.EventTypes {
		if v.data[t], err = c.Compile(DataSchemaURL(t)); err != nil {
			return nil, fmt.Errorf("compile %s schema: %w", t, err)
		}
		v.fields[t] = fieldsOf(t)
	}
	return v, nil
}

// Validate checks a raw event against the envelope schema and the data
// schema of its type, and returns an *Error listing every violation.
func (v *Validator) Validate(raw []byte) error {
	if len(raw) > MaxEventBytes {
		return &Error{Violations: []Violation{{Message: fmt.Sprintf("event is %d bytes, the limit is %d", len(raw), MaxEventBytes)}}}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return &Error{Violations: []Violation{{Message: "not JSON: " + jsonErrorText(err)}}}
	}
	var vs []Violation
	if err := v.envelope.Validate(doc); err != nil {
		vs = v.violations(err, "")
	}
	obj, _ := doc.(map[string]any)
	typ, _ := obj["type"].(string)
	if t, ok := ParseTypeName(typ); ok {
		if data, isObj := obj["data"].(map[string]any); isObj {
			if err := v.data[t].Validate(data); err != nil {
				vs = append(vs, v.violations(err, "/data")...)
			}
		}
	}
	if vs != nil {
		return &Error{Violations: vs}
	}
	return nil
}

// jsonErrorText describes a JSON syntax error without quoting the input.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return "malformed"
}

// violations flattens a schema validation error into its leaves.
func (v *Validator) violations(err error, prefix string) []Violation {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Violation{{Path: prefix, Message: err.Error()}}
	}
	var out []Violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			p := prefix + pointer(e.InstanceLocation)
			msg := e.ErrorKind.LocalizedString(v.printer)
			if isIdentifierValue(p) {
				// Some keyword messages quote the value; an identifier's
				// value must never reach a log or a dead-letter header.
				msg = "invalid value (" + e.ErrorKind.KeywordPath()[0] + ")"
			}
			out = append(out, Violation{Path: p, Message: msg})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func isIdentifierValue(p string) bool {
	return strings.HasPrefix(p, "/data/identifiers/") && strings.HasSuffix(p, "/value")
}

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}

// wireEvent is the JSON shape of an event.
type wireEvent struct {
	SpecVersion     string   `json:"specversion"`
	ID              string   `json:"id"`
	Source          string   `json:"source"`
	Type            string   `json:"type"`
	Time            string   `json:"time"`
	DataContentType string   `json:"datacontenttype,omitempty"`
	DataSchema      string   `json:"dataschema,omitempty"`
	Data            wireData `json:"data"`
}

type wireData struct {
	Namespace     string                    `json:"namespace,omitempty"`
	Identifiers   []suppression.Identifier  `json:"identifiers"`
	Scopes        []suppression.Scope       `json:"scopes,omitempty"`
	Origin        suppression.Origin        `json:"origin"`
	Reason        suppression.Reason        `json:"reason,omitempty"`
	Overrides     suppression.Reason        `json:"overrides,omitempty"`
	Justification string                    `json:"justification,omitempty"`
	Context       *suppression.EventContext `json:"context,omitempty"`
}

// Decoded is a valid event and the match keys of its identifiers.
type Decoded struct {
	Event suppression.Event
	// Keys are the match keys of every identifier, deduplicated; Keys[0] is
	// the primary identifier's primary key, the Kafka message key.
	Keys []suppression.MatchKey
}

// Decode validates a raw event, checks the domain's rules and every
// identifier, and returns the event with its match keys. ref is the time the
// event's timestamp is judged against (see suppression.Event.Normalize). The
// error is an *Error listing every violation.
func (v *Validator) Decode(raw []byte, ref time.Time, n suppression.Normalizer) (Decoded, error) {
	if len(raw) <= MaxEventBytes {
		if d, ok := v.fastDecode(raw, ref, n); ok {
			return d, nil
		}
	}
	return v.slowDecode(raw, ref, n)
}

// slowDecode decides with the JSON Schemas and reports every violation.
func (v *Validator) slowDecode(raw []byte, ref time.Time, n suppression.Normalizer) (Decoded, error) {
	if err := v.Validate(raw); err != nil {
		return Decoded{}, err
	}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		return Decoded{}, &Error{Violations: []Violation{{Message: "not an event: " + jsonErrorText(err)}}}
	}
	t, _ := ParseTypeName(w.Type)
	at, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Decoded{}, &Error{Violations: []Violation{{Path: "/time", Message: "not an RFC 3339 time"}}}
	}
	return v.finish(w, t, at, ref, n)
}

// finish turns a schema-valid wire event into the domain's, checking the
// domain's rules and every identifier.
func (v *Validator) finish(w wireEvent, t suppression.EventType, at, ref time.Time, n suppression.Normalizer) (Decoded, error) {
	e := suppression.Event{
		ID: w.ID, Source: w.Source, Type: t, OccurredAt: at,
		Namespace: w.Data.Namespace, Identifiers: w.Data.Identifiers, Scopes: w.Data.Scopes,
		Reason: w.Data.Reason, Origin: w.Data.Origin, Justification: w.Data.Justification,
	}
	if t == suppression.EventUnsuppress {
		e.Reason = w.Data.Overrides
	}
	if w.Data.Context != nil {
		e.Context = *w.Data.Context
	}
	var vs []Violation
	if err := e.Normalize(ref); err != nil {
		var ee *suppression.EventError
		if !errors.As(err, &ee) {
			return Decoded{}, err
		}
		for _, p := range ee.Problems {
			vs = append(vs, Violation{Path: fieldPointer(p.Field), Message: p.Message})
		}
	}
	keys, err := n.Expand(e.Identifiers...)
	var ee *suppression.ExpandError
	if errors.As(err, &ee) {
		for _, bad := range ee.Invalid {
			vs = append(vs, Violation{Path: "/data/identifiers/" + strconv.Itoa(bad.Index) + "/value", Message: bad.Err.Error()})
		}
	} else if err != nil {
		return Decoded{}, err
	}
	if vs != nil {
		return Decoded{}, &Error{Violations: vs}
	}
	return Decoded{Event: e, Keys: keys}, nil
}

// fieldPointer turns the domain's "data.scopes[1]" into "/data/scopes/1".
func fieldPointer(f string) string {
	f = strings.NewReplacer("[", ".", "]", "").Replace(f)
	return "/" + strings.ReplaceAll(f, ".", "/")
}

// Encode renders a domain event as a CloudEvent. The event should be
// normalised; Encode does not validate it.
func Encode(e suppression.Event) ([]byte, error) {
	w := wireEvent{
		SpecVersion: SpecVersion, ID: e.ID, Source: e.Source, Type: TypeName(e.Type),
		Time:            e.OccurredAt.UTC().Format(time.RFC3339Nano),
		DataContentType: "application/json", DataSchema: DataSchemaURL(e.Type),
		Data: wireData{
			Namespace: e.Namespace, Identifiers: e.Identifiers, Scopes: e.Scopes,
			Origin: e.Origin, Justification: e.Justification,
		},
	}
	if e.Namespace == suppression.DefaultNamespace {
		w.Data.Namespace = ""
	}
	switch e.Type {
	case suppression.EventUnsuppress:
		w.Data.Overrides = e.Reason
	case suppression.EventSuppress:
		w.Data.Reason = e.Reason
	}
	if e.Context != (suppression.EventContext{}) {
		c := e.Context
		w.Data.Context = &c
	}
	return json.Marshal(w)
}
