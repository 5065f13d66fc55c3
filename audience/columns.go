package audience

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/suppressd/suppressd/suppression"
)

// Column is an identifier column of a file.
type Column struct {
	Index int    // position in the header, 0-based
	Name  string // header as written, trimmed
	Type  suppression.IDType
}

// Layout is how the rows of one file are read: how many fields each has
// (the header's) and which of them hold identifiers.
type Layout struct {
	Fields  int
	Columns []Column // in header order
}

// Mapping is a caller's own account of which columns hold which
// identifiers, for files that follow no template.
type Mapping []MappedColumn

// MappedColumn is one entry of a Mapping.
type MappedColumn struct {
	Type   suppression.IDType
	Header string
}

// ParseColumns reads mappings written "type:Header,type:Header,..." (each
// argument may hold several); a header may not contain a comma. Types are
// the identifier types (email, phone, user_id, maid, email_sha256,
// phone_sha256). Several headers may have one type: all are checked.
func ParseColumns(specs ...string) (Mapping, error) {
	var m Mapping
	for _, spec := range specs {
		for _, entry := range strings.Split(spec, ",") {
			if strings.TrimSpace(entry) == "" {
				continue
			}
			typ, header, ok := strings.Cut(entry, ":")
			t := suppression.IDType(strings.TrimSpace(typ))
			switch {
			case !ok || strings.TrimSpace(header) == "":
				return nil, fmt.Errorf("%q: want type:Header", entry)
			case !t.Valid():
				return nil, fmt.Errorf("%q: unknown identifier type %q (want one of %s)", entry, t, typeNames())
			}
			mc := MappedColumn{Type: t, Header: strings.TrimSpace(header)}
			if !slices.Contains(m, mc) {
				m = append(m, mc)
			}
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no column named: want type:Header,... (types %s)", typeNames())
	}
	return m, nil
}

func typeNames() string {
	names := make([]string, len(suppression.IDTypes))
	for i, t := range suppression.IDTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// Resolve finds the mapped columns in a header row: every column with a
// mapped name is checked (a name may repeat), other columns pass through
// unchecked. It fails naming every mapped header the row lacks, and a
// column mapped to two types.
func (m Mapping) Resolve(header []string) (*Layout, error) {
	l := &Layout{Fields: len(header)}
	var missing []string
	typeOf := map[int]suppression.IDType{}
	for _, mc := range m {
		found := false
		for i, name := range header {
			if fold(name) != fold(mc.Header) {
				continue
			}
			found = true
			if t, dup := typeOf[i]; dup && t != mc.Type {
				return nil, fmt.Errorf("column %q is mapped to both %s and %s", mc.Header, t, mc.Type)
			} else if dup {
				continue
			}
			typeOf[i] = mc.Type
			l.Columns = append(l.Columns, Column{Index: i, Name: strings.TrimSpace(name), Type: mc.Type})
		}
		if !found && !slices.Contains(missing, fmt.Sprintf("%q", mc.Header)) {
			missing = append(missing, fmt.Sprintf("%q", mc.Header))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the header row has no column %s", strings.Join(missing, ", "))
	}
	slices.SortFunc(l.Columns, func(a, b Column) int { return a.Index - b.Index })
	return l, nil
}

// Keys appends the match keys of a row's identifiers to dst. A row is
// malformed, and problem says why (never with a value), when it is not
// well-formed CSV, has another number of fields than the header (its
// columns may have shifted), has an identifier that cannot be read, or
// has no identifier at all: such a row cannot be shown to be allowed.
//
// What each column type takes:
//   - email, phone: the raw value, normalised and expanded into every
//     platform's form, or its SHA-256 (64 hex digits, or base64) as the
//     platform hashed it;
//   - email_sha256, phone_sha256: a SHA-256 only;
//   - maid, user_id: the raw value.
//
// Ad platforms document phones with their country code, with or without
// '+', so a raw phone without '+' is read both as international and, when
// the Normalizer has a default region, in that region; the row is
// suppressed if either reading is.
func (l *Layout) Keys(n suppression.Normalizer, rec *Record, dst []suppression.MatchKey) (_ []suppression.MatchKey, problem string) {
	switch {
	case rec.Problem != "":
		return dst, "not valid CSV: " + rec.Problem
	case rec.NumFields() != l.Fields:
		return dst, fmt.Sprintf("%d fields, the header has %d", rec.NumFields(), l.Fields)
	}
	found := false
	for _, c := range l.Columns {
		v := bytes.TrimFunc(rec.Field(c.Index), unicode.IsSpace)
		if len(v) == 0 {
			continue
		}
		found = true
		var err error
		if dst, err = appendKeys(n, dst, c.Type, v); err != nil {
			return dst, fmt.Sprintf("column %d (%s): %v", c.Index+1, c.Type, err)
		}
	}
	if !found {
		return dst, "no identifier"
	}
	return dst, ""
}

func appendKeys(n suppression.Normalizer, dst []suppression.MatchKey, t suppression.IDType, v []byte) ([]suppression.MatchKey, error) {
	switch t {
	case suppression.IDEmailSHA256, suppression.IDPhoneSHA256:
		h, err := suppression.ParseSHA256(t, string(v))
		if err != nil {
			return dst, err
		}
		return append(dst, suppression.MatchKey{Kind: t.Kind(), Hash: h}), nil
	case suppression.IDEmail, suppression.IDPhone:
		// A digest has no '@' and no '+', and no email or phone is 43,
		// 44 or 64 characters of nothing but base64 or hex digits (a
		// phone has at most 15 digits).
		if len(v) == 64 || len(v) == 43 || len(v) == 44 {
			hashed := suppression.IDEmailSHA256
			if t == suppression.IDPhone {
				hashed = suppression.IDPhoneSHA256
			}
			if h, err := suppression.ParseSHA256(hashed, string(v)); err == nil {
				return append(dst, suppression.MatchKey{Kind: t.Kind(), Hash: h}), nil
			}
		}
		if t == suppression.IDPhone {
			return appendPhoneKeys(n, dst, string(v))
		}
	}
	keys, err := n.Expand(suppression.Identifier{Type: t, Value: string(v)})
	if err != nil {
		return dst, unwrapExpand(err)
	}
	return append(dst, keys...), nil
}

func appendPhoneKeys(n suppression.Normalizer, dst []suppression.MatchKey, v string) ([]suppression.MatchKey, error) {
	if strings.HasPrefix(v, "+") {
		keys, err := n.Expand(suppression.Identifier{Type: suppression.IDPhone, Value: v})
		if err != nil {
			return dst, unwrapExpand(err)
		}
		return append(dst, keys...), nil
	}
	intl, errIntl := n.Expand(suppression.Identifier{Type: suppression.IDPhone, Value: "+" + v})
	local, errLocal := n.Expand(suppression.Identifier{Type: suppression.IDPhone, Value: v})
	if errIntl != nil && errLocal != nil {
		return dst, unwrapExpand(errIntl)
	}
	return append(append(dst, intl...), local...), nil
}

// unwrapExpand gives the identifier's own error (type and reason, never
// the value) without Expand's "identifiers[0]: " prefix.
func unwrapExpand(err error) error {
	if ee, ok := err.(*suppression.ExpandError); ok && len(ee.Invalid) == 1 {
		return ee.Invalid[0].Err
	}
	return err
}
