package unsubscribe

import (
	"html/template"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"text/template/parse"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// TestLocales: every language has exactly English's keys, each message with
// exactly the placeholders of its English one (a translator may move
// "{address}" but not drop or rename it), and nothing blank.
func TestLocales(t *testing.T) {
	require.GreaterOrEqual(t, len(catalogs), 4)
	codes := make([]string, len(catalogs))
	for i, c := range catalogs {
		codes[i] = c.code
	}
	require.Equal(t, "en", codes[0], "English is the default and the reference")
	for _, want := range []string{"de", "fr", "es"} {
		require.Contains(t, codes, want)
	}
	enKeys := slices.Sorted(maps.Keys(english.msgs))
	for _, c := range catalogs {
		t.Run(c.code, func(t *testing.T) {
			keys := slices.Sorted(maps.Keys(c.msgs))
			var missing, extra []string
			for _, k := range enKeys {
				if _, ok := c.msgs[k]; !ok {
					missing = append(missing, k)
				}
			}
			for _, k := range keys {
				if _, ok := english.msgs[k]; !ok {
					extra = append(extra, k)
				}
			}
			require.Empty(t, missing, "keys of en.json missing from %s.json", c.code)
			require.Empty(t, extra, "keys of %s.json that en.json does not have", c.code)
			for _, k := range keys {
				msg := c.msgs[k]
				require.NotEmpty(t, strings.TrimSpace(msg), "%s: %s is blank", c.code, k)
				require.Equal(t, msg, strings.TrimFunc(msg, unicode.IsSpace), "%s: %s has surrounding spaces", c.code, k)
				require.Equal(t, placeholders(english.msgs[k]), placeholders(msg), "%s: %s: placeholders differ from en.json", c.code, k)
				require.NotContains(t, msg, "<", "%s: %s: messages are text, the template adds markup", c.code, k)
			}
		})
	}
}

// TestLocaleFilesAreChecked: a broken locale file stops the program at start
// with an error that names the file.
func TestLocaleFilesAreChecked(t *testing.T) {
	good := `{"lang.name": "X"}`
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no English", map[string]string{"locales/de.json": good}, "locales/en.json is missing"},
		{"duplicate key", map[string]string{"locales/en.json": `{"lang.name": "English", "lang.name": "E"}`}, `locales/en.json: key "lang.name" appears twice at the top level`},
		{"not flat", map[string]string{"locales/en.json": `{"lang.name": "English", "confirm": {"title": "x"}}`}, "locales/en.json: cannot unmarshal object"},
		{"no language name", map[string]string{"locales/en.json": `{"x": "y"}`}, "locales/en.json: lang.name (the language's own name) is missing"},
		{"not a language code", map[string]string{"locales/en.json": good, "locales/german.json": good}, "locales/german.json: the file name must be a language code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, data := range tc.files {
				fsys[name] = &fstest.MapFile{Data: []byte(data)}
			}
			_, err := loadCatalogs(fsys)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestTemplateKeys: the templates call messages only with literal keys that
// en.json has, and every key of en.json is used, by a template or by the
// code (scope phrases, masked identifiers): no text a translator works on
// is dead, and no page shows a raw key.
func TestTemplateKeys(t *testing.T) {
	used := map[string]bool{}
	for _, tmpl := range pages.Templates() {
		if tmpl.Tree == nil {
			continue
		}
		walkTemplate(t, tmpl.Name(), tmpl.Tree.Root, used)
	}
	require.NotEmpty(t, used)
	for k := range used {
		_, ok := english.msgs[k]
		require.True(t, ok, "the templates use the key %q, which en.json lacks", k)
	}

	code := map[string]bool{"lang.name": true, "list.and": true}
	for _, s := range append(slices.Clone(scopeCodes), suppression.TopicScope("newsletter")) {
		key, _ := scopeMessage(s)
		require.NotEmpty(t, key, "scope %s has no phrase", s)
		code[key] = true
	}
	for _, id := range maskCases {
		if key, _, _ := maskMessage(id); key != "" {
			code[key] = true
		}
	}
	for k := range english.msgs {
		require.True(t, used[k] || code[k], "en.json key %q is used nowhere", k)
	}
}

// maskCases reach every branch of maskMessage.
var maskCases = []suppression.Identifier{
	{Type: suppression.IDEmail, Value: "alice@example.org"},
	{Type: suppression.IDEmail, Value: "no-at-sign"},
	{Type: suppression.IDPhone, Value: "+1 415 555 0189"},
	{Type: suppression.IDPhone, Value: "12"},
	{Type: suppression.IDMAID, Value: "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
	{Type: suppression.IDMAID, Value: "short"},
	{Type: suppression.IDUserID, Value: "cust-42"},
	{Type: suppression.IDEmailSHA256, Value: strings.Repeat("ab", 32)},
}

// messageMethods take a message key as their first argument.
var messageMethods = map[string]bool{"T": true, "S": true, "Titled": true}

func walkTemplate(t *testing.T, name string, n parse.Node, used map[string]bool) {
	t.Helper()
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkTemplate(t, name, c, used)
		}
	case *parse.ActionNode:
		walkTemplate(t, name, n.Pipe, used)
	case *parse.IfNode:
		walkTemplate(t, name, n.Pipe, used)
		walkTemplate(t, name, n.List, used)
		walkTemplate(t, name, n.ElseList, used)
	case *parse.RangeNode:
		walkTemplate(t, name, n.Pipe, used)
		walkTemplate(t, name, n.List, used)
		walkTemplate(t, name, n.ElseList, used)
	case *parse.WithNode:
		walkTemplate(t, name, n.Pipe, used)
		walkTemplate(t, name, n.List, used)
		walkTemplate(t, name, n.ElseList, used)
	case *parse.TemplateNode:
		walkTemplate(t, name, n.Pipe, used)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkTemplate(t, name, c, used)
		}
	case *parse.CommandNode:
		if len(n.Args) > 0 && messageMethods[lastIdent(n.Args[0])] {
			require.GreaterOrEqual(t, len(n.Args), 2, "%s: %s without a key", name, n)
			key, ok := n.Args[1].(*parse.StringNode)
			require.True(t, ok, "%s: %s: the key must be a literal string, so it can be checked", name, n)
			used[key.Text] = true
		}
		for _, a := range n.Args {
			walkTemplate(t, name, a, used)
		}
	}
}

func lastIdent(n parse.Node) string {
	var idents []string
	switch n := n.(type) {
	case *parse.FieldNode:
		idents = n.Ident
	case *parse.VariableNode:
		idents = n.Ident
	case *parse.ChainNode:
		idents = n.Field
	}
	if len(idents) == 0 {
		return ""
	}
	return idents[len(idents)-1]
}

func TestChooseLanguage(t *testing.T) {
	for _, tc := range []struct {
		accept, query, want string
		explicit            bool
	}{
		{"", "", "en", false},
		{"de-DE,de;q=0.9,en;q=0.8", "", "de", false},
		{"de-AT", "", "de", false},
		{"fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "", "fr", false},
		{"es-419", "", "es", false},
		{"en;q=0.5, es;q=0.9", "", "es", false},      // q-values, not order
		{"nl, pt-BR;q=0.9", "", "en", false},         // nothing the pages speak
		{"nl, de;q=0.3", "", "de", false},            // the first language spoken
		{"de;q=0, fr;q=0.1", "", "fr", false},        // q=0: not acceptable
		{"not a language header!!", "", "en", false}, // garbage
		{"de-DE,de;q=0.9;q=0.9", "", "de", false},    // malformed weights: still German
		{"xx-!!, fr;q=abc", "", "fr", false},
		{"de", "fr", "fr", true}, // the page's choice wins
		{"de", "ES", "es", true},
		{"de", "xx", "de", false}, // an unknown choice is ignored
		{"de", "<script>", "de", false},
	} {
		t.Run(tc.accept+"?"+tc.query, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/u/x?lang="+url.QueryEscape(tc.query), nil)
			if tc.accept != "" {
				r.Header.Set("Accept-Language", tc.accept)
			}
			c, explicit := chooseLanguage(r)
			require.Equal(t, tc.want, c.code)
			require.Equal(t, tc.explicit, explicit)
		})
	}
}

func TestFormat(t *testing.T) {
	c := &catalog{code: "en", msgs: map[string]string{
		"m": "Hello {name}, it's {what}; {missing} stays & so do {braces",
	}}
	require.Equal(t, "Hello <b>, it's {what}; {missing} stays & so do {braces",
		c.text("m", "name", "<b>", "what", "{what}"), "a value is not expanded again")
	require.Equal(t, template.HTML("Hello &lt;b&gt;, it&#39;s <em>x</em>; {missing} stays &amp; so do {braces"),
		c.html("m", "name", "<b>", "what", template.HTML("<em>x</em>")))
	require.Equal(t, "Unsubscribe", c.text("confirm.button"), "a missing key falls back to English")
	require.Equal(t, "no.such.key", c.text("no.such.key"))
}

// TestLocalizedPages: the pages speak the browser's language, the page's
// choice overrides it and is kept in the page's links, and the one-click
// POST works on any of these URLs with its body alone.
func TestLocalizedPages(t *testing.T) {
	e := newEnv(t, nil)
	de := http.Header{"Accept-Language": {"de-DE,de;q=0.9,en;q=0.5"}}

	resp, body := e.do(http.MethodGet, "/u/"+e.token, "", nil, de)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireSecurityHeaders(t, resp)
	require.Equal(t, "de", resp.Header.Get("Content-Language"))
	require.Contains(t, resp.Header.Values("Vary"), "Accept-Language")
	require.Contains(t, body, `<html lang="de">`)
	require.Contains(t, body, `<title>Abmelden</title>`)
	require.Contains(t, body, `Mit der Schaltfläche unten melden Sie <strong>A***e@Example.org</strong> von der Liste „newsletter“ ab.`)
	require.Contains(t, body, `<button type="submit">Abmelden</button>`)
	require.Contains(t, body, `href="`+e.token+`/preferences"`, "no ?lang= when the browser chose")
	require.Contains(t, body, `<span aria-current="true" lang="de">Deutsch</span>`)
	require.Contains(t, body, `<a href="?lang=fr" hreflang="fr" lang="fr">Français</a>`)
	require.Contains(t, body, `<nav aria-label="Sprache">`)
	requireNoAddress(t, body)

	// The page's choice beats the header and stays in the links.
	resp, body = e.do(http.MethodGet, "/u/"+e.token+"?lang=es", "", nil, de)
	require.Equal(t, "es", resp.Header.Get("Content-Language"))
	require.Contains(t, body, `<html lang="es">`)
	require.Contains(t, body, `href="`+e.token+`/preferences?lang=es"`)
	require.Contains(t, body, `El botón de abajo dará de baja <strong>A***e@Example.org</strong> de la lista «newsletter».`)

	resp, body = e.do(http.MethodGet, "/u/"+e.token+"/preferences?lang=fr", "", nil, nil)
	require.Contains(t, body, `<html lang="fr">`)
	require.Contains(t, body, "<label for=\"scope-0\">Uniquement de la liste «\u00a0newsletter\u00a0»</label>")
	require.Contains(t, body, "De quoi souhaitez-vous vous désabonner\u202f?")
	require.Empty(t, e.pub.Events(), "GETs in any language change nothing")

	// A form posts to its page's URL, ?lang= included; the field the
	// provider sends is all the one-click needs, whatever the query.
	resp, body = e.gmailPost("/u/" + e.token + "?lang=de")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<h1 id="done">Sie sind abgemeldet</h1>`)
	require.Contains(t, body, `Wir haben <strong>A***e@Example.org</strong> von der Liste „newsletter“ abgemeldet.`)
	require.Contains(t, body, `/preferences?lang=de">Von weiteren Nachrichten abmelden</a>`)
	require.NotContains(t, body, "<nav", "no language switcher on a POST's answer: a GET of its URL shows another page")
	resp, body = e.form("/u/"+e.token+"/preferences?lang=fr", url.Values{"scope": {"*"}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `Nous avons désabonné <strong>A***e@Example.org</strong> de toutes nos communications marketing.`)
	require.Contains(t, body, `href="preferences?lang=fr"`)
	resp, body = e.form("/u/"+e.token+"/preferences", url.Values{"scope": {"nope"}}, http.Header{"Accept-Language": {"es"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, `<p class="warn" role="alert">Elija una de las opciones siguientes.</p>`)
	evs := e.pub.Events()
	require.Len(t, evs, 2)
	require.Equal(t, []suppression.Scope{"topic:newsletter"}, evs[0].Scopes)
	require.Equal(t, []suppression.Scope{"*"}, evs[1].Scopes)

	// The invalid page too.
	resp, body = e.do(http.MethodGet, "/u/garbage", "", nil, http.Header{"Accept-Language": {"fr"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, `<html lang="fr">`)
	require.Contains(t, body, "Ce lien n’est pas valide ou a expiré")
}

// TestLocalizedScopesAndMasks: every language has a phrase for every scope
// a token can carry and words for every kind of identifier, and joins
// several scopes its own way.
func TestLocalizedScopesAndMasks(t *testing.T) {
	scopes := []suppression.Scope{"topic:newsletter", "email", "sale_sharing"}
	for _, c := range catalogs {
		for _, s := range scopeCodes {
			require.NotEqual(t, "“"+string(s)+"”", c.describe(s), "%s: %s", c.code, s)
		}
		for _, id := range maskCases {
			require.NotEmpty(t, c.mask(id))
			require.NotContains(t, c.mask(id), "{", "%s: placeholders filled", c.code)
		}
	}
	for code, want := range map[string]string{
		"en": "from the “newsletter” list, from marketing email and from the sale or sharing of your data",
		"de": "von der Liste „newsletter“, von Marketing-E-Mails und vom Verkauf und von der Weitergabe Ihrer Daten",
		"fr": "de la liste «\u00a0newsletter\u00a0», des e-mails marketing et de la vente ou du partage de vos données",
		"es": "de la lista «newsletter», de los correos electrónicos de marketing y de la venta o cesión de sus datos",
	} {
		require.Equal(t, want, catalogFor(code).describeAll(scopes))
	}
	phone := suppression.Identifier{Type: suppression.IDPhone, Value: "+49 30 1234567"}
	require.Equal(t, "phone number ending 67", Mask(phone), "Mask stays English")
	require.Equal(t, "die Telefonnummer mit den Endziffern 67", catalogFor("de").mask(phone))
	require.Equal(t, "a***e@example.org", catalogFor("es").mask(suppression.Identifier{Type: suppression.IDEmail, Value: "alice@example.org"}))
}
