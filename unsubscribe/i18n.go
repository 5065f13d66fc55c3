package unsubscribe

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"

	"golang.org/x/text/language"

	"github.com/suppressd/suppressd/suppression"
)

// The pages' texts: one JSON file per language in locales/, a flat object of
// message key to text. en.json is the reference every other file must match
// key for key (TestLocales). A text may hold placeholders, "{address}",
// filled in by the page; a translator may move them but not rename them.
// Adding a language is adding a file: locales/README.md tells how.
//
//go:embed locales/*.json
var localesFS embed.FS

// defaultLanguage is the language of a request that states none the pages
// speak; its file is the reference.
const defaultLanguage = "en"

// catalog is the texts of one language.
type catalog struct {
	code string // "de": the file name, the lang attribute, ?lang=
	name string // the language's own name ("Deutsch"), for the switcher
	msgs map[string]string
}

var (
	// catalogs holds every language, the default first, then by code.
	catalogs = mustLoadCatalogs(localesFS)
	english  = catalogs[0]
	matcher  = newMatcher(catalogs)
)

func mustLoadCatalogs(fsys fs.FS) []*catalog {
	cs, err := loadCatalogs(fsys)
	if err != nil {
		panic("unsubscribe: " + err.Error())
	}
	return cs
}

func loadCatalogs(fsys fs.FS) ([]*catalog, error) {
	files, err := fs.Glob(fsys, "locales/*.json")
	if err != nil {
		return nil, err
	}
	var cs []*catalog
	for _, f := range files {
		code := strings.TrimSuffix(path.Base(f), ".json")
		tag, err := language.Parse(code)
		if err != nil || tag.String() != code {
			return nil, fmt.Errorf("%s: the file name must be a language code such as de or pt-BR", f)
		}
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		if err := checkDuplicateKeys(data); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		c := &catalog{code: code}
		if err := decodeStrict(data, &c.msgs); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		c.name = c.msgs["lang.name"]
		if c.name == "" {
			return nil, fmt.Errorf("%s: lang.name (the language's own name) is missing", f)
		}
		cs = append(cs, c)
	}
	i := slices.IndexFunc(cs, func(c *catalog) bool { return c.code == defaultLanguage })
	if i < 0 {
		return nil, fmt.Errorf("locales/%s.json is missing", defaultLanguage)
	}
	cs[0], cs[i] = cs[i], cs[0]
	slices.SortFunc(cs[1:], func(a, b *catalog) int { return strings.Compare(a.code, b.code) })
	return cs, nil
}

func newMatcher(cs []*catalog) language.Matcher {
	tags := make([]language.Tag, len(cs))
	for i, c := range cs {
		tags[i] = language.MustParse(c.code)
	}
	return language.NewMatcher(tags)
}

// catalogFor returns the catalog of a code the pages speak, or nil.
func catalogFor(code string) *catalog {
	for _, c := range catalogs {
		if strings.EqualFold(c.code, code) {
			return c
		}
	}
	return nil
}

// chooseLanguage picks the language of a page: the "lang" query parameter
// when it names one the pages speak (the person chose it on a page), else
// the best match for Accept-Language (q-values respected, "de-AT" finds
// "de"), else English. explicit reports the first case: the choice is then
// kept in the page's links.
func chooseLanguage(r *http.Request) (c *catalog, explicit bool) {
	if c := catalogFor(r.URL.Query().Get("lang")); c != nil {
		return c, true
	}
	header := r.Header.Get("Accept-Language")
	tags, _, err := language.ParseAcceptLanguage(header)
	if err != nil {
		tags = lenientAcceptLanguage(header)
	}
	if len(tags) == 0 {
		return english, false
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return english, false
	}
	return catalogs[i], false
}

// lenientAcceptLanguage reads a header ParseAcceptLanguage refused
// ("de;q=0.9;q=0.9", "de;q=high"): the languages in their order, without
// weights, each entry that is not a language skipped. Better the person's
// language with a guessed order than English for a typo.
func lenientAcceptLanguage(header string) []language.Tag {
	var tags []language.Tag
	for entry := range strings.SplitSeq(header, ",") {
		name, _, _ := strings.Cut(entry, ";")
		if t, err := language.Parse(strings.TrimSpace(name)); err == nil {
			tags = append(tags, t)
		}
	}
	return tags
}

// text returns a message as plain text, its placeholders filled from args,
// given as name/value pairs of strings.
func (c *catalog) text(key string, args ...string) string {
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = a
	}
	return string(c.format(key, vals, false))
}

// html returns a message as HTML: the text escaped, each placeholder filled
// with its value escaped, or as is when the value is template.HTML (made by
// the template, such as a <strong> around the address).
func (c *catalog) html(key string, args ...any) template.HTML {
	return template.HTML(c.format(key, args, true))
}

// format fills a message's "{name}" placeholders in one pass, so a value
// that itself holds braces is never expanded. A key missing from the
// catalog falls back to English, then to the key itself (TestLocales keeps
// both from happening).
func (c *catalog) format(key string, args []any, escape bool) string {
	msg, ok := c.msgs[key]
	if !ok {
		if msg, ok = english.msgs[key]; !ok {
			msg = key
		}
	}
	lit := func(s string) string {
		if escape {
			return template.HTMLEscapeString(s)
		}
		return s
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(msg, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(msg[open:], '}')
		if end < 0 {
			break
		}
		name := msg[open+1 : open+end]
		b.WriteString(lit(msg[:open]))
		if v, ok := lookupArg(args, name); ok {
			if h, ok := v.(template.HTML); ok {
				b.WriteString(string(h))
			} else {
				b.WriteString(lit(fmt.Sprint(v)))
			}
		} else {
			b.WriteString(lit(msg[open : open+end+1]))
		}
		msg = msg[open+end+1:]
	}
	b.WriteString(lit(msg))
	return b.String()
}

func lookupArg(args []any, name string) (any, bool) {
	for i := 0; i+1 < len(args); i += 2 {
		if n, _ := args[i].(string); n == name {
			return args[i+1], true
		}
	}
	return nil, false
}

// placeholders returns the names of a message's placeholders, sorted.
func placeholders(msg string) []string {
	var names []string
	for {
		open := strings.IndexByte(msg, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(msg[open:], '}')
		if end < 0 {
			break
		}
		names = append(names, msg[open+1:open+end])
		msg = msg[open+end+1:]
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// scopeMessage is the message saying what unsubscribing from a scope stops,
// with its preposition ("from the “newsletter” list"): languages put the
// preposition together with the article ("du", "vom", "del"), so it is part
// of the phrase, not of the sentence around it.
func scopeMessage(s suppression.Scope) (key string, args []string) {
	if topic, ok := s.Topic(); ok {
		return "from.topic", []string{"topic", topic}
	}
	switch s {
	case suppression.ScopeGlobal:
		return "from.global", nil
	case suppression.ChannelScope(suppression.ChannelEmail),
		suppression.ChannelScope(suppression.ChannelSMS),
		suppression.ChannelScope(suppression.ChannelPush),
		suppression.ChannelScope(suppression.ChannelAds),
		suppression.PurposeScope(suppression.PurposeMarketing),
		suppression.PurposeScope(suppression.PurposeAdvertising),
		suppression.PurposeScope(suppression.PurposeProfiling),
		suppression.PurposeScope(suppression.PurposeSaleSharing):
		return "from." + string(s), nil
	}
	return "", nil // a token's scopes are checked: not reached
}

// describe says what unsubscribing from a scope stops.
func (c *catalog) describe(s suppression.Scope) string {
	key, args := scopeMessage(s)
	if key == "" {
		return "“" + string(s) + "”"
	}
	return c.text(key, args...)
}

// describeAll joins the phrases of several scopes: "A, B and C".
func (c *catalog) describeAll(scopes []suppression.Scope) string {
	ds := make([]string, len(scopes))
	for i, s := range scopes {
		ds[i] = c.describe(s)
	}
	switch len(ds) {
	case 0:
		return ""
	case 1:
		return ds[0]
	}
	return c.text("list.and", "a", strings.Join(ds[:len(ds)-1], ", "), "b", ds[len(ds)-1])
}
