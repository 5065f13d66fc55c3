package api

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
)

// TestFilterClientGoneIsNoOK: a client that hangs up in the middle of a
// filter stream got a 200 and then nothing more; /metrics counts the
// request as aborted, with the step that noticed (the upload broke, the
// answer could not be written, the store read was canceled), never as a
// 200 and never as the store failing. A stream that ends well is a 200.
func TestFilterClientGoneIsNoOK(t *testing.T) {
	e := newEnv(t, testenv.RedisClients(t)["standalone"], Options{FilterChunk: 10})
	status, _, body := e.do(http.MethodPost, "/v1/filter?type=email_sha256", filterKey, "text/plain", []byte(sha("whole@example.org")+"\n"))
	require.Equal(t, http.StatusOK, status, string(body))

	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/filter?type=email_sha256", pr)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+filterKey)
	req.Header.Set("Content-Type", "text/plain")
	go func() {
		for i := 0; ; i++ { // an endless list, until the connection goes
			if _, err := fmt.Fprintf(pw, "%s\n", sha(fmt.Sprintf("gone%d@example.org", i))); err != nil {
				return
			}
		}
	}()
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err, "the stream started")
	require.NoError(t, resp.Body.Close()) // unread: the connection is closed
	pw.CloseWithError(io.ErrClosedPipe)

	aborted := func() float64 {
		return e.metrics()[`suppressd_api_requests_total{code="aborted",route="filter"}`]
	}
	require.Eventually(t, func() bool { return aborted() == 1 }, 30*time.Second, 20*time.Millisecond)
	m := e.metrics()
	require.Equal(t, 1.0, m[`suppressd_api_stream_aborts_total{reason="read",route="filter"}`]+
		m[`suppressd_api_stream_aborts_total{reason="write",route="filter"}`]+
		m[`suppressd_api_stream_aborts_total{reason="canceled",route="filter"}`], "%v", m)
	require.NotContains(t, m, `suppressd_api_stream_aborts_total{reason="unavailable",route="filter"}`, "the store did not fail")
	require.Equal(t, 1.0, m[`suppressd_api_requests_total{code="200",route="filter"}`], "only the whole stream is a 200")
}
