// Package unsubscribe is the one-click unsubscribe link (RFC 2369, RFC 8058)
// and the pages behind it.
//
// A send gets a token (Keyring.Mint) and the two headers built from it: a
// Minter makes both for many recipients, with the base URL, mailto address
// and TTL checked once (POST /v1/links and `suppressd link` use one);
// Headers does it for one token. The token is sealed with AES-256-GCM, so
// it names the person and the list only to whoever holds the key: a link
// forwarded, logged by a proxy or scanned by a mail filter gives away
// neither the address nor a way to forge another one.
//
//	List-Unsubscribe: <https://mail.example.org/u/TOKEN>, <mailto:unsubscribe@example.org?subject=unsubscribe%20TOKEN>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// The mailto alternative's subject carries the token too: whoever reads
// that mailbox verifies it with Keyring.VerifySubject and publishes
// MailEvent.
//
// NewHandler serves the link:
//
//	POST /u/{token}                 one-click (mail provider) or the page's button: publishes the unsubscribe, then 200
//	GET  /u/{token}                 confirmation page with a button; changes nothing (scanners fetch GETs)
//	GET  /u/{token}/preferences     leave one topic or everything
//	POST /u/{token}/preferences     publishes the choice
//
// The handler answers 200 only after the Publisher reports the event stored
// by Kafka; otherwise 503 and a page that claims nothing.
//
// The pages speak English, German, French and Spanish (locales/*.json,
// chosen by Accept-Language or the page's ?lang=), and show the brand of the
// token's namespace (Options.Brands, LoadBrands): name, logo, privacy
// policy, support address and an accent colour, with text colours computed
// to read at WCAG AA contrast. docs/pages.md describes both.
package unsubscribe
