package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/suppressd/suppressd/client"
)

// exampleServer stands in for suppressd in the examples: bob@example.org
// unsubscribed, and the filter endpoint suppresses hashes starting "bb".
func exampleServer() *httptest.Server {
	unsubscribed := map[string]any{
		"scope": "*", "reason": "unsubscribe", "origin": "recipient",
		"source": "/unsubscribe-link", "since": "2026-11-28T10:00:00Z",
	}
	verdict := func(ids []client.Identifier) map[string]any {
		for _, id := range ids {
			if id.Value == "bob@example.org" {
				return map[string]any{"allowed": false, "suppression": unsubscribed}
			}
		}
		return map[string]any{"allowed": true}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		var req client.CheckRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		_ = json.NewEncoder(w).Encode(verdict(req.Identifiers))
	})
	mux.HandleFunc("POST /v1/check/batch", func(w http.ResponseWriter, r *http.Request) {
		var req client.BatchRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		var results []map[string]any
		for _, c := range req.Contacts {
			res := verdict(c.Identifiers)
			res["ref"] = c.Ref
			if c.Identifiers[0].Value == "not-an-email" {
				res = map[string]any{"ref": c.Ref, "allowed": false, "error": map[string]string{
					"code": "invalid_request", "message": "invalid email: no @", "field": "contacts[2].identifiers[0].value"}}
			}
			results = append(results, res)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	})
	mux.HandleFunc("POST /v1/filter", func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		var total, allowed, suppressed int
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			total++
			if strings.HasPrefix(sc.Text(), "bb") {
				suppressed++
				continue
			}
			allowed++
			fmt.Fprintln(w, sc.Text())
		}
		fmt.Fprintf(w, "# total=%d allowed=%d suppressed=%d malformed=0\n", total, allowed, suppressed)
	})
	return httptest.NewServer(mux)
}

func ExampleClient_Check() {
	srv := exampleServer()
	defer srv.Close()

	c, err := client.New(srv.URL, "my-api-key", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, email := range []string{"alice@example.org", "bob@example.org"} {
		res, err := c.Check(context.Background(), client.CheckRequest{
			Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: email}},
			Channel:     client.ChannelEmail,
			Purpose:     client.PurposeMarketing,
			Topic:       "newsletter",
		})
		if err != nil {
			// res.Allowed is already false: log and move on.
			log.Printf("suppression check failed: %v", err)
		}
		if !res.Allowed {
			fmt.Printf("%s: do not send", email)
			if s := res.Suppression; s != nil {
				fmt.Printf(" (%s, scope %s, since %s)", s.Reason, s.Scope, s.Since.Format("2006-01-02"))
			}
			fmt.Println()
			continue
		}
		fmt.Printf("%s: send\n", email)
	}
	// Output:
	// alice@example.org: send
	// bob@example.org: do not send (unsubscribe, scope *, since 2026-11-28)
}

func ExampleClient_CheckBatch() {
	srv := exampleServer()
	defer srv.Close()

	c, err := client.New(srv.URL, "my-api-key", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	req := client.BatchRequest{Channel: client.ChannelEmail, Purpose: client.PurposeMarketing}
	for i, email := range []string{"alice@example.org", "bob@example.org", "not-an-email"} {
		req.Contacts = append(req.Contacts, client.Contact{
			Ref:         fmt.Sprintf("order-%d", i+1),
			Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: email}},
		})
	}
	results, err := c.CheckBatch(context.Background(), req)
	if err != nil {
		// Every contact not answered is already Allowed=false.
		log.Printf("batch check failed: %v", err)
	}
	for _, res := range results {
		switch {
		case res.Err != nil:
			fmt.Printf("%s: skip, %v\n", res.Ref, res.Err)
		case res.Allowed:
			fmt.Printf("%s: send\n", res.Ref)
		default:
			fmt.Printf("%s: suppressed (%s)\n", res.Ref, res.Suppression.Reason)
		}
	}
	// Output:
	// order-1: send
	// order-2: suppressed (unsubscribe)
	// order-3: skip, invalid_request: invalid email: no @
}

func ExampleClient_Filter() {
	srv := exampleServer()
	defer srv.Close()

	c, err := client.New(srv.URL, "my-api-key", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// In production in is the audience file and out a temporary file
	// that is uploaded only if Filter returns no error.
	in := strings.NewReader(strings.Repeat("a", 64) + "\n" + strings.Repeat("b", 64) + "\n" + strings.Repeat("c", 64) + "\n")
	var out io.Writer = os.Stdout
	sum, err := c.Filter(context.Background(), client.FilterRequest{
		Type:     client.TypeEmailSHA256,
		Platform: client.PlatformMeta,
		Gzip:     false,
	}, in, out)
	if err != nil {
		log.Fatalf("filter failed, discard the output: %v", err)
	}
	fmt.Printf("total=%d allowed=%d suppressed=%d\n", sum.Total, sum.Allowed, sum.Suppressed)
	// Output:
	// aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
	// cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
	// total=3 allowed=2 suppressed=1
}

// An ad platform's customer-list file, filtered before the upload: the
// header row and every row that may be targeted come back byte for byte.
// The upload goes ahead only once FilterRows has returned without an
// error, from a file that is renamed into place then (as `suppressd
// filter` does).
func ExampleClient_FilterRows() {
	c, err := client.New("https://suppressd.internal", "my-api-key", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	in, err := os.Open("audience.csv") // Email,Phone,First Name,Last Name,Country,Zip
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create("upload.csv.partial")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := c.FilterRows(context.Background(), client.FilterRowsRequest{
		Template: client.TemplateGoogle, // or Columns: []client.Column{{Type: client.TypeEmailSHA256, Header: "Email"}}
		Gzip:     true,
		Checkpoint: func(cp client.FilterCheckpoint) {
			fmt.Printf("\r%d rows answered", cp.Total)
		},
	}, in, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove("upload.csv.partial")
		log.Fatalf("filter failed, nothing to upload: %v", err)
	}
	if err := os.Rename("upload.csv.partial", "upload.csv"); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\n%d rows: %d allowed, %d suppressed, %d malformed (lines %v)\n",
		sum.Total, sum.Allowed, sum.Suppressed, sum.Malformed, sum.MalformedLines)
}
