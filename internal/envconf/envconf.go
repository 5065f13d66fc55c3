// Package envconf reads a configuration struct from environment variables
// named by its struct tags, reports every bad variable at once, and lists
// every variable with its default and meaning. One walk over the struct
// serves reading, `suppressd serve -h` and the documentation checks, so
// none of them can list a variable the others do not.
//
// The tags are kelseyhightower/envconfig's:
//
//	envconfig:"NAME"  the variable's name after its struct's prefix; on a
//	                  nested struct, the prefix of its fields
//	default:"..."     the value when the variable is not set (set but empty
//	                  means empty)
//	desc:"..."        what it means, for the help (a test holds every
//	                  variable of the binary to having one)
//	secret:"true"     its value is never repeated in an error
//
// Unlike envconfig, a variable is read only under its full name: envconfig
// also falls back to the bare tag (PASSWORD, TLS, DB, ADDR...) when the
// prefixed variable is unset, so an unrelated variable of the environment
// could configure the service.
package envconf

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Var is one configuration variable.
type Var struct {
	// Name is the variable's full name, e.g. SUPPRESSD_API_STORE_TIMEOUT.
	Name string
	// Default is its default as written in the struct tag; "" when none.
	Default string
	// Desc says what it means.
	Desc string
	// Type is how its value is read: string, bool, int, duration, list
	// (comma-separated) or map (key:value pairs, comma-separated).
	Type string
	// Secret values are never repeated in an error.
	Secret bool

	field reflect.Value
}

var durationType = reflect.TypeOf(time.Duration(0))

// Vars returns every variable of spec, a pointer to a struct, in the
// order of its fields. It fails on a field without an envconfig tag, or
// of a type it cannot read: mistakes of the program, not of the
// environment.
func Vars(prefix string, spec any) ([]Var, error) {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("envconf: want a pointer to a struct, got %T", spec)
	}
	return walk(prefix+"_", v.Elem(), nil)
}

func walk(prefix string, s reflect.Value, out []Var) ([]Var, error) {
	t := s.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := s.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			// An embedded struct's fields are the outer struct's, as
			// envconfig reads them.
			var err error
			if out, err = walk(prefix, fv, out); err != nil {
				return nil, err
			}
			continue
		}
		name, ok := f.Tag.Lookup("envconfig")
		if !ok || name == "" {
			return nil, fmt.Errorf("envconf: %s.%s has no envconfig tag", t.Name(), f.Name)
		}
		if f.Type.Kind() == reflect.Struct {
			var err error
			if out, err = walk(prefix+name+"_", fv, out); err != nil {
				return nil, err
			}
			continue
		}
		v := Var{Name: prefix + name, Default: f.Tag.Get("default"), Desc: f.Tag.Get("desc"),
			Secret: f.Tag.Get("secret") == "true", field: fv}
		switch {
		case f.Type == durationType:
			v.Type = "duration"
		case f.Type.Kind() == reflect.String:
			v.Type = "string"
		case f.Type.Kind() == reflect.Bool:
			v.Type = "bool"
		case f.Type.Kind() == reflect.Int || f.Type.Kind() == reflect.Int64:
			v.Type = "int"
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
			v.Type = "list"
		case f.Type.Kind() == reflect.Map && f.Type.Key().Kind() == reflect.String && f.Type.Elem().Kind() == reflect.String:
			v.Type = "map"
		default:
			return nil, fmt.Errorf("envconf: %s: cannot read a %s", v.Name, f.Type)
		}
		if v.Default != "" {
			if _, _, err := v.parse(v.Default); err != nil {
				return nil, fmt.Errorf("envconf: %s: bad default %q", v.Name, v.Default)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// parse reads s as v's type; on failure it says what was wrong and what
// was wanted.
func (v Var) parse(s string) (value reflect.Value, want string, err error) {
	switch v.Type {
	case "duration":
		d, err := time.ParseDuration(strings.TrimSpace(s))
		return reflect.ValueOf(d), "a duration such as 500ms, 10s or 1h30m", err
	case "bool":
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		return reflect.ValueOf(b), "true or false", err
	case "int":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return reflect.ValueOf(n), "a whole number", err
	case "map":
		m := map[string]string{}
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			k, val, ok := strings.Cut(item, ":")
			if !ok {
				return reflect.ValueOf(m), "key:value pairs, comma-separated", errors.New("not a pair")
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		return reflect.ValueOf(m), "", nil
	case "list":
		items := []string{}
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return reflect.ValueOf(items), "", nil
	}
	return reflect.ValueOf(s), "", nil
}

// Read sets every field of spec (a pointer to a struct) from lookup
// (os.LookupEnv), or its default when the variable is not set. It reads
// every variable even after a bad one and returns all the problems,
// joined (errors.Join), each a *Problem; a field whose value is bad keeps
// its default, so that checks made afterwards do not report it again.
func Read(prefix string, spec any, lookup func(string) (string, bool)) error {
	vars, err := Vars(prefix, spec)
	if err != nil {
		return err
	}
	var problems []error
	for _, v := range vars {
		s, set := lookup(v.Name)
		if !set {
			s = v.Default
		}
		val, want, err := v.parse(s)
		if err != nil {
			problems = append(problems, &Problem{Var: v.Name, What: "not " + article(v.Type), Got: s, Want: want, Hidden: v.Secret})
			s = v.Default
			val, _, _ = v.parse(s)
		}
		if !set && s == "" {
			val = reflect.Zero(v.field.Type())
		}
		v.field.Set(val.Convert(v.field.Type()))
	}
	return errors.Join(problems...)
}

func article(typ string) string {
	switch typ {
	case "int":
		return "a number"
	case "bool":
		return "a boolean"
	case "map":
		return "a list of key:value pairs"
	}
	return "a " + typ
}

// Problem is one bad variable: what is wrong with it, the value found and
// the value wanted.
type Problem struct {
	// Var names the variable, or several ("SUPPRESSD_PEPPER and
	// SUPPRESSD_PEPPER_FILE"), or a flag standing in for one (--role).
	Var string
	// What is wrong, e.g. "not a duration".
	What string
	// Got is the value found; shown unless Hidden.
	Got string
	// Want says what would be right; optional.
	Want string
	// Hidden leaves Got out: the variable is a secret, or its value says
	// nothing more than What.
	Hidden bool
}

// Error reads `SUPPRESSD_X: what is wrong (got "...", want ...)`.
func (p *Problem) Error() string {
	var paren []string
	if !p.Hidden {
		paren = append(paren, "got "+strconv.Quote(p.Got))
	}
	if p.Want != "" {
		paren = append(paren, "want "+p.Want)
	}
	if len(paren) == 0 {
		return p.Var + ": " + p.What
	}
	return p.Var + ": " + p.What + " (" + strings.Join(paren, ", ") + ")"
}

// Usage writes every variable, flag-style: its name and type, then what
// it means and its default.
func Usage(w io.Writer, vars []Var) {
	for _, v := range vars {
		kind := v.Type
		if v.Secret {
			kind += ", secret"
		}
		fmt.Fprintf(w, "  %s %s\n    \t%s", v.Name, kind, v.Desc)
		if v.Default != "" {
			fmt.Fprintf(w, " (default %s)", v.Default)
		}
		fmt.Fprintln(w)
	}
}
