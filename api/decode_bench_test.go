package api

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkDecodeBatch is what reading a /v1/check/batch body of 1,000
// contacts of one address each costs, strictness included: the part of a
// batch that neither the index nor Redis can take away.
func BenchmarkDecodeBatch(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"channel":"email","purpose":"marketing","contacts":[`)
	for i := range 1000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"ref":"%d","identifiers":[{"type":"email","value":"reader-%d@example.org"}]}`, i, i)
	}
	body.WriteString(`]}`)
	raw := body.Bytes()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/check/batch", bytes.NewReader(raw))
		r.Header.Set("Content-Type", "application/json")
		var req batchRequest
		if err := decodeJSON(httptest.NewRecorder(), r, 16<<20, &req); err != nil {
			b.Fatal(err)
		}
		if len(req.Contacts) != 1000 || req.Contacts[999].Identifiers[0].Value != "reader-999@example.org" {
			b.Fatal("decoded wrong")
		}
	}
}
