package unsubscribe_test

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// An inbound-mail processor reads the mailbox of the mailto: alternative.
// Each mail's Subject carries the token; verified with the link keys, it
// says who asked to leave what, and MailEvent is the unsubscribe to
// publish (schemas.Encode it for POST /v1/events, or hand it to
// publish.Publisher).
func ExampleKeyring_VerifySubject() {
	secret := sha256.Sum256([]byte("example only: use 32 random bytes"))
	kr, _ := unsubscribe.NewKeyring("k1", []unsubscribe.Key{{ID: "k1", Secret: secret[:]}})
	m, _ := unsubscribe.NewMinter(unsubscribe.MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org", Mailto: "unsubscribe@example.org"})

	// At send time.
	links, _ := m.Links(unsubscribe.Claims{Namespace: "acme", CampaignID: "c-42"}, unsubscribe.Claims{
		Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: "alice@example.org"},
		Scopes:     []suppression.Scope{"topic:newsletter"},
	}, time.Now())

	// The mail the reader's client sent, as the processor receives it.
	subject := "Re: " + unsubscribe.MailtoSubject(links.Token)

	claims, token, err := kr.VerifySubject(subject, time.Now())
	if err != nil {
		fmt.Println("not an unsubscribe request:", err) // forged, expired, or no token: publish nothing
		return
	}
	e := unsubscribe.MailEvent(claims, token, time.Now())
	fmt.Println(e.Type, e.Source, e.Namespace, e.Scopes, e.Context.CampaignID)
	// Output: unsubscribe /unsubscribe-mailto acme [topic:newsletter] c-42
}
