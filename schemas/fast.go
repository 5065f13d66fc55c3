package schemas

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/suppressd/suppressd/suppression"
)

// The fast path. Validating with the JSON Schema library costs about 45 us
// per event, most of the consumer's budget, so events are first read with a
// hand-written check of the same schemas over fastjson. The fast path only
// ever accepts: anything it is not sure of (a format it does not model, a
// duplicate key, any violation) goes to the schema validator, which decides
// and reports. FuzzFastPathAgrees holds the two together: whatever the fast
// path accepts, the schemas accept, and it decodes to the same event.

// envelopeSeen records which required envelope members were present.
type envelopeSeen struct{ specversion, id, source, typ, time, data bool }

// dataFields lists, per event type, the data members allowed and required.
type dataFields struct {
	allowed  map[string]bool
	required []string
}

func fieldsOf(t suppression.EventType) dataFields {
	f := dataFields{
		allowed:  map[string]bool{"namespace": true, "identifiers": true, "scopes": true, "origin": true, "context": true},
		required: []string{"identifiers", "origin"},
	}
	if t != suppression.EventErasureRequested && t != suppression.EventGPC {
		f.required = append(f.required, "scopes")
	}
	switch t {
	case suppression.EventSuppress:
		f.allowed["reason"] = true
		f.required = append(f.required, "reason")
	case suppression.EventUnsuppress:
		f.allowed["overrides"], f.allowed["justification"] = true, true
		f.required = append(f.required, "overrides", "justification")
	}
	return f
}

var contextLimits = map[string]int{"campaign_id": 128, "list_id": 128, "message_id": 256, "request_id": 128}

func stringOf(v *fastjson.Value, minRunes, maxRunes int) (string, bool) {
	if v.Type() != fastjson.TypeString {
		return "", false
	}
	b := v.GetStringBytes()
	if !utf8.Valid(b) {
		return "", false
	}
	n := utf8.RuneCount(b)
	return string(b), n >= minRunes && n <= maxRunes
}

// extensionName is the envelope's propertyNames pattern ^[a-z0-9]{1,20}$.
func extensionName(k string) bool {
	if len(k) == 0 || len(k) > 20 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// visit calls f for each member and reports false on a duplicate key or
// when f does. The key is only valid during the call.
func visit(o *fastjson.Object, f func(k []byte, v *fastjson.Value) bool) bool {
	ok := true
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	o.Visit(func(k []byte, v *fastjson.Value) {
		if !ok {
			return
		}
		for _, s := range seen {
			if string(s) == string(k) {
				ok = false
				return
			}
		}
		seen = append(seen, k)
		ok = f(k, v)
	})
	return ok
}

// simpleTime accepts what both time.Parse(RFC3339Nano) and the schema's
// date-time format surely accept: exactly YYYY-MM-DDTHH:MM:SS, an optional
// fraction, then Z or a +HH:MM / -HH:MM offset.
func simpleTime(s string) (time.Time, bool) {
	const head = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(head)+1 {
		return time.Time{}, false
	}
	for i := 0; i < len(head); i++ {
		if c := s[i]; head[i] == 'd' && (c < '0' || c > '9') || head[i] != 'd' && c != head[i] {
			return time.Time{}, false
		}
	}
	rest := s[len(head):]
	if rest[0] == '.' {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 1 || j > 10 {
			return time.Time{}, false
		}
		rest = rest[j:]
	}
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
		isDigits(rest[1:3]) && isDigits(rest[4:6]):
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// simpleSource accepts sources made of unreserved URI characters and '/'
// and ':', that url.Parse accepts.
func simpleSource(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/._:~-", c) >= 0) {
			return false
		}
	}
	u, err := url.Parse(s)
	return err == nil && !strings.Contains(u.Host, ":")
}

// fastDecode returns the event when it is surely valid, and false whenever
// the slow path must decide.
func (v *Validator) fastDecode(raw []byte, ref time.Time, n suppression.Normalizer) (Decoded, bool) {
	// fastjson is more lenient than the standard library (raw control
	// characters in strings, for one); the standard scanner decides syntax.
	if !json.Valid(raw) {
		return Decoded{}, false
	}
	p := v.parsers.Get()
	defer v.parsers.Put(p)
	root, err := p.ParseBytes(raw)
	if err != nil {
		return Decoded{}, false
	}
	env, err := root.Object()
	if err != nil {
		return Decoded{}, false
	}
	var (
		w       wireEvent
		data    *fastjson.Object
		typeOK  bool
		evType  suppression.EventType
		timeVal time.Time
	)
	var have envelopeSeen
	ok := visit(env, func(kb []byte, val *fastjson.Value) bool {
		var good bool
		switch k := string(kb); k {
		case "specversion":
			have.specversion = true
			w.SpecVersion, good = stringOf(val, 1, 10)
			good = good && w.SpecVersion == SpecVersion
		case "id":
			have.id = true
			w.ID, good = stringOf(val, 1, 256)
		case "source":
			have.source = true
			w.Source, good = stringOf(val, 1, 256)
			good = good && simpleSource(w.Source)
		case "type":
			have.typ = true
			w.Type, good = stringOf(val, 1, 256)
			evType, typeOK = ParseTypeName(w.Type)
			good = good && typeOK
		case "time":
			have.time = true
			w.Time, good = stringOf(val, 20, 64)
			if good {
				timeVal, good = simpleTime(w.Time)
			}
		case "datacontenttype":
			w.DataContentType, good = stringOf(val, 1, 64)
			good = good && w.DataContentType == "application/json"
		case "dataschema":
			w.DataSchema, good = stringOf(val, 1, 256)
		case "subject":
			_, good = stringOf(val, 0, 256)
		case "data":
			have.data = true
			data, err = val.Object()
			good = err == nil
		default:
			good = extensionName(k)
		}
		return good
	})
	if !ok || !(have.specversion && have.id && have.source && have.typ && have.time && have.data) {
		return Decoded{}, false
	}
	if w.DataSchema != "" && w.DataSchema != DataSchemaURL(evType) {
		return Decoded{}, false // a URI the fast path does not check
	}
	f := v.fields[evType]
	var haveData [8]string
	nData := 0
	d := &w.Data
	ok = visit(data, func(kb []byte, val *fastjson.Value) bool {
		k := string(kb)
		if !f.allowed[k] || nData == len(haveData) {
			return false
		}
		haveData[nData] = k
		nData++
		var good bool
		switch k {
		case "namespace":
			d.Namespace, good = stringOf(val, 1, suppression.MaxNameLen)
			good = good && suppression.CheckName(d.Namespace) == nil
		case "identifiers":
			good = readIdentifiers(val, d)
		case "scopes":
			good = readScopes(val, d)
		case "origin":
			var s string
			s, good = stringOf(val, 1, 16)
			_, err := suppression.ParseOrigin(s)
			d.Origin, good = suppression.Origin(s), good && err == nil
		case "reason", "overrides":
			var s string
			s, good = stringOf(val, 1, 32)
			_, err := suppression.ParseReason(s)
			good = good && err == nil
			if k == "reason" {
				d.Reason = suppression.Reason(s)
			} else {
				d.Overrides = suppression.Reason(s)
			}
		case "justification":
			d.Justification, good = stringOf(val, 10, 1000)
		case "context":
			good = readContext(val, d)
		}
		return good
	})
	if !ok {
		return Decoded{}, false
	}
	for _, k := range f.required {
		if !slices.Contains(haveData[:nData], k) {
			return Decoded{}, false
		}
	}
	dec, err := v.finish(w, evType, timeVal, ref, n)
	if err != nil {
		return Decoded{}, false
	}
	return dec, true
}

func readIdentifiers(val *fastjson.Value, d *wireData) bool {
	arr, err := val.Array()
	if err != nil || len(arr) < 1 || len(arr) > suppression.MaxIdentifiers {
		return false
	}
	d.Identifiers = make([]suppression.Identifier, len(arr))
	for i, item := range arr {
		o, err := item.Object()
		if err != nil {
			return false
		}
		var gotType, gotValue bool
		good := visit(o, func(k []byte, v *fastjson.Value) bool {
			switch string(k) {
			case "type":
				s, ok := stringOf(v, 1, 32)
				d.Identifiers[i].Type, gotType = suppression.IDType(s), ok && suppression.IDType(s).Valid()
				return gotType
			case "value":
				d.Identifiers[i].Value, gotValue = stringOf(v, 1, 320)
				return gotValue
			}
			return false
		})
		if !good || !gotType || !gotValue {
			return false
		}
	}
	return true
}

func readScopes(val *fastjson.Value, d *wireData) bool {
	arr, err := val.Array()
	if err != nil || len(arr) < 1 || len(arr) > suppression.MaxScopes {
		return false
	}
	d.Scopes = make([]suppression.Scope, len(arr))
	for i, item := range arr {
		s, ok := stringOf(item, 1, 80)
		if !ok {
			return false
		}
		if _, err := suppression.ParseScope(s); err != nil {
			return false
		}
		d.Scopes[i] = suppression.Scope(s)
	}
	return true
}

func readContext(val *fastjson.Value, d *wireData) bool {
	o, err := val.Object()
	if err != nil {
		return false
	}
	c := &suppression.EventContext{}
	d.Context = c
	return visit(o, func(kb []byte, v *fastjson.Value) bool {
		k := string(kb)
		limit, known := contextLimits[k]
		if !known {
			return false
		}
		s, ok := stringOf(v, 0, limit)
		switch k {
		case "campaign_id":
			c.CampaignID = s
		case "list_id":
			c.ListID = s
		case "message_id":
			c.MessageID = s
		case "request_id":
			c.RequestID = s
		}
		return ok
	})
}
