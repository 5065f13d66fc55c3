package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

func hexSHA(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }

// TestFilterRowsThroughKafka is the exporter's loop on real servers: opt-outs
// of raw identifiers are published to Kafka, `suppressd serve` (api and
// consumer roles, in process) folds them into Redis, and `suppressd filter
// --template X` filters each platform's file, its header as the platform
// documents it and its identifiers hashed the platform's way. Exactly the
// rows of the people who opted out are gone; every other row comes back
// byte for byte.
func TestFilterRowsThroughKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	redisAddr := testenv.RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topic := testkafka.Unique("rows")
	topics := publish.Topics{Unsubscribes: topic, Consent: topic + "-consent", Erasure: topic + "-erasure"}
	env, names := serviceTopics(topic)
	for _, name := range names {
		testkafka.CreateTopic(ctx, t, brokers[0], name, 3)
	}
	apiAddr, apiKey := freePort(t), "sdk_rows_e2e"
	h := sha256.Sum256([]byte(apiKey))
	maps.Copy(env, map[string]string{
		"SUPPRESSD_ROLE":                "api,consumer",
		"SUPPRESSD_API_ADDR":            apiAddr,
		"SUPPRESSD_API_KEYS":            "exporter:check+filter:" + hex.EncodeToString(h[:]),
		"SUPPRESSD_KAFKA_BROKERS":       strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS":         redisAddr,
		"SUPPRESSD_STORE_PREFIX":        strings.ReplaceAll(testkafka.Unique("rw"), "-", ""),
		"SUPPRESSD_PEPPER":              "MDEyMzQ1Njc4OWFiY2RlZi1yb3dzLXBlcHBlcg==",
		"SUPPRESSD_PHONE_REGION":        "GB",
		"SUPPRESSD_CONSUMER_BATCH_WAIT": "5ms",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	serveInProcess(t, "") // the roles of SUPPRESSD_ROLE
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + apiAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "suppressd is ready")

	// The opt-outs, as the unsubscribe link, the consent platform and the
	// browser's GPC signal publish them: raw identifiers.
	w := publish.NewWriter(brokers, nil)
	defer w.Close()
	pub := publish.New(w, topics, suppression.Normalizer{DefaultRegion: "GB"}, 10*time.Second, nil)
	at := time.Now().Add(-time.Hour)
	event := func(id string, typ suppression.EventType, when time.Time, ident suppression.Identifier, scopes ...suppression.Scope) {
		t.Helper()
		require.NoError(t, pub.Publish(ctx, suppression.Event{ID: id, Source: "/test", Type: typ, OccurredAt: when,
			Identifiers: []suppression.Identifier{ident}, Scopes: scopes, Origin: suppression.OriginRecipient}))
	}
	emailID := func(v string) suppression.Identifier {
		return suppression.Identifier{Type: suppression.IDEmail, Value: v}
	}
	event("u-1", suppression.EventUnsubscribe, at, emailID("Cloudy.SanFrancisco+shopping@gmail.com"), "*")
	event("c-1", suppression.EventConsentWithdrawn, at, suppression.Identifier{Type: suppression.IDPhone, Value: "07700 900123"}, "advertising")
	event("g-1", suppression.EventGPC, at, emailID("Ann.Lee@Example.org"))
	event("u-2", suppression.EventUnsubscribe, at, suppression.Identifier{Type: suppression.IDMAID, Value: "AECE52E7-03EE-455A-B3C4-E57283966239"}, "ads")
	event("u-3", suppression.EventUnsubscribe, at, emailID("topic.only@example.org"), "topic:newsletter")
	event("u-4", suppression.EventUnsubscribe, at, emailID("changed.mind@example.org"), "ads")

	t.Setenv("SUPPRESSD_URL", "http://"+apiAddr)
	t.Setenv("SUPPRESSD_API_KEY", apiKey)
	c, err := client.New("http://"+apiAddr, apiKey, client.Options{})
	require.NoError(t, err)
	probe := client.BatchRequest{Channel: client.ChannelAds, Purpose: client.PurposeAdvertising, Contacts: []client.Contact{
		{Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "cloudy.sanfrancisco+shopping@gmail.com"}}},
		{Identifiers: []client.Identifier{{Type: client.TypePhone, Value: "+447700900123"}}},
		{Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "ann.lee@example.org"}}},
		{Identifiers: []client.Identifier{{Type: client.TypeMAID, Value: "aece52e7-03ee-455a-b3c4-e57283966239"}}},
		{Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "changed.mind@example.org"}}},
	}}
	// The resubscribe is published only once the unsubscribe it lifts is
	// applied: "allowed" before both is indistinguishable from after both.
	require.Eventually(t, func() bool {
		res, err := c.CheckBatch(ctx, probe)
		return err == nil && !res[0].Allowed && !res[1].Allowed && !res[2].Allowed && !res[3].Allowed && !res[4].Allowed
	}, 60*time.Second, 100*time.Millisecond, "the consumer applied every opt-out")
	event("r-4", suppression.EventResubscribe, at.Add(time.Minute), emailID("changed.mind@example.org"), "ads")
	require.Eventually(t, func() bool {
		res, err := c.CheckBatch(ctx, probe)
		return err == nil && !res[0].Allowed && !res[1].Allowed && !res[2].Allowed && !res[3].Allowed && res[4].Allowed
	}, 60*time.Second, 100*time.Millisecond, "the consumer applied the resubscribe")

	dir := t.TempDir()
	for _, tc := range []struct {
		template, header string
		rows             []row
	}{
		{
			// Google: lowercased, gmail dots dropped and the +tag kept
			// (Customer Match via the Ads API); phones E.164 with '+'.
			template: "google", header: "Email,Phone,First Name,Last Name,Country,Zip\r\n",
			rows: []row{
				{hexSHA("cloudysanfrancisco+shopping@gmail.com") + ",,Cloudy,S,US,94016\r\n", false},
				{"," + hexSHA("+447700900123") + ",Wendy,W,GB,SW1A 1AA\r\n", false},
				{hexSHA("ann.lee@example.org") + ",,Ann,Lee,US,10001\r\n", false},
				{hexSHA("topic.only@example.org") + ",,Topic,Only,US,\"10 001\"\r\n", true},
				{hexSHA("changed.mind@example.org") + ",,Changed,Mind,US,10001\r\n", true},
				{hexSHA("someone.else@gmail.com") + "," + hexSHA("+447700900999") + ",\"Else, Some\",E,GB,\"SW1A\r\n1AA\"\r\n", true},
			},
		},
		{
			// Meta: lowercased addresses; phones as digits with the
			// country code and no '+'; MAIDs as the device reports them.
			template: "meta", header: "email,phone,fn,ln,country,madid\n",
			rows: []row{
				{hexSHA("cloudy.sanfrancisco+shopping@gmail.com") + ",,cloudy,s,us,\n", false},
				{"," + hexSHA("447700900123") + ",wendy,w,gb,\n", false},
				{",,m,a,us,AECE52E7-03EE-455A-B3C4-E57283966239\n", false},
				{hexSHA("ann.lee@example.org") + ",,ann,lee,us,\n", false},
				{hexSHA("fresh@example.org") + "," + hexSHA("447700900999") + ",f,r,gb,BEBE52E7-03EE-455A-B3C4-E57283966239\n", true},
			},
		},
		{
			// TikTok: the +tag dropped on every domain; phones E.164
			// (its older guide) or digits (its newer one).
			template: "tiktok", header: "Email_SHA256,Phone_SHA256,MAID\n",
			rows: []row{
				{hexSHA("cloudy.sanfrancisco@gmail.com") + ",,\n", false},
				{"," + hexSHA("+447700900123") + ",\n", false},
				{"," + hexSHA("447700900123") + ",\n", false},
				{",,aece52e7-03ee-455a-b3c4-e57283966239\n", false},
				{hexSHA("topic.only@example.org") + ",,\n", true},
				{hexSHA("fresh@example.org") + ",,\n", true},
			},
		},
		{
			// LinkedIn: the SHA-256 of the lowercased address.
			template: "linkedin", header: "email,firstname,lastname,jobtitle,employeecompany,country\n",
			rows: []row{
				{hexSHA("cloudy.sanfrancisco+shopping@gmail.com") + ",Cloudy,S,CEO,Acme,US\n", false},
				{hexSHA("ann.lee@example.org") + ",Ann,Lee,CTO,\"Acme, Inc.\",US\n", false},
				{hexSHA("changed.mind@example.org") + ",Changed,Mind,,,US\n", true},
			},
		},
	} {
		t.Run(tc.template, func(t *testing.T) {
			var in, want bytes.Buffer
			in.WriteString(tc.header)
			want.WriteString(tc.header)
			for _, r := range tc.rows {
				in.WriteString(r.raw)
				if r.keep {
					want.WriteString(r.raw)
				}
			}
			inPath, outPath := filepath.Join(dir, tc.template+".csv.gz"), filepath.Join(dir, tc.template+"-upload.csv")
			writeGzip(t, inPath, in.Bytes())
			var out, errb bytes.Buffer
			require.NoError(t, runCommand(ctx, &out, &errb, "filter", "--template", tc.template, "--in", inPath, "--out", outPath))
			got, err := os.ReadFile(outPath)
			require.NoError(t, err)
			require.Equal(t, want.String(), string(got), "the rows of people who opted out are gone, the others byte for byte")
			kept := 0
			for _, r := range tc.rows {
				if r.keep {
					kept++
				}
			}
			require.Contains(t, errb.String(), fmt.Sprintf("filtered %d rows", len(tc.rows)))
			require.Contains(t, errb.String(), fmt.Sprintf("%d allowed, %d suppressed, 0 malformed", kept, len(tc.rows)-kept))
			require.NoFileExists(t, outPath+".partial")
		})
	}

	// --columns, for a file in the exporter's own format; and plain HTTP.
	in := "id;x,Work Email,Home Email,Mobile\n" +
		"1," + hexSHA("ann.lee@example.org") + ",,\n" +
		"2,," + hexSHA("cloudysanfrancisco@gmail.com") + ",\n" +
		"3,,,07700 900123\n" +
		"4," + hexSHA("fresh@example.org") + ",,+44 7700 900999\n"
	inPath, outPath := filepath.Join(dir, "own.csv"), filepath.Join(dir, "own-upload.csv")
	require.NoError(t, os.WriteFile(inPath, []byte(in), 0o600))
	var out, errb bytes.Buffer
	require.NoError(t, runCommand(ctx, &out, &errb, "filter", "--columns", "email_sha256:Work Email,email_sha256:Home Email,phone:Mobile", "--in", inPath, "--out", outPath))
	got, err := os.ReadFile(outPath)
	require.NoError(t, err)
	require.Equal(t, "id;x,Work Email,Home Email,Mobile\n4,"+hexSHA("fresh@example.org")+",,+44 7700 900999\n", string(got))

	req, _ := http.NewRequest(http.MethodPost, "http://"+apiAddr+"/v1/filter/rows?template=tiktok&summary=true", strings.NewReader("Email,MAID\nCloudy.SanFrancisco+shopping@gmail.com,\nfresh@example.org,\n"))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "Email,MAID\nfresh@example.org,\n# total=2 allowed=1 suppressed=1 malformed=0\n", string(b), "raw addresses in TikTok's Email column")
	require.Equal(t, "1", resp.Trailer.Get("Suppressd-Suppressed"))
}

type row struct {
	raw  string
	keep bool
}

func writeGzip(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	zw := gzip.NewWriter(f)
	_, err = zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
}

// flakyAPI is the API on a redis-server the test can stop: a server that
// fails mid-stream. Every 100th person has opted out.
func flakyAPI(t *testing.T) (string, *testredis.Server) {
	t.Helper()
	srv := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store := teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: testKeyer.Fingerprint()})
	var ws []suppression.Write
	for i := 0; i < flakyPeople; i += 100 {
		ws = append(ws, suppression.Write{Namespace: suppression.DefaultNamespace, Scope: suppression.ScopeGlobal,
			Key: testKeyer.StorageKey(suppression.MatchKey{Kind: suppression.KindEmail, Hash: sha256.Sum256([]byte(person(i)))}),
			Change: suppression.Change{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
				Stamp: suppression.Stamp{At: 1, Tag: uint64(i)}, Origin: suppression.OriginRecipient, Source: "/test"}})
	}
	_, err := store.Apply(context.Background(), ws)
	require.NoError(t, err)
	keys, err := api.ParseKeys("exporter:filter:" + hexSHA(flakyKey))
	require.NoError(t, err)
	s := api.New(store, api.Options{Keys: keys, Normalizer: suppression.Normalizer{DefaultRegion: "US"}, Keyer: testKeyer,
		StoreTimeout: time.Second, FilterChunk: 500}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, srv
}

const (
	flakyPeople = 200_000
	flakyKey    = "sdk_flaky_exporter"
)

func person(i int) string { return fmt.Sprintf("person%d@example.org", i) }

// testAudience returns a test audience and what the filter must make of it.
func testAudience(rows bool) (in, want []byte) {
	var b, w bytes.Buffer
	if rows {
		b.WriteString("Email,Phone,Zip\r\n")
		w.WriteString("Email,Phone,Zip\r\n")
	}
	for i := range flakyPeople {
		line := hexSHA(person(i)) + "\n"
		if rows {
			line = fmt.Sprintf("%s,%s,\"%05d\"\r\n", hexSHA(person(i)), hexSHA(fmt.Sprintf("+1650%07d", i)), i%100000)
			if i%50_000 == 1 {
				line = "not-an-address,,\"00001\"\r\n" // malformed, on line i+2
			}
		}
		b.WriteString(line)
		if i%100 != 0 && !(rows && i%50_000 == 1) {
			w.WriteString(line)
		}
	}
	return b.Bytes(), w.Bytes()
}

// TestFilterFailsMidStreamAndResumes: a run that fails in the middle of the
// stream (Redis stops under the API, which answers 503 for the rest) exits
// non-zero and leaves nothing under the target's name, only a partial
// output that is an exact prefix of the answer and a checkpoint; --resume
// then filters only the rest, and the file it renames into place is the
// whole answer, byte for byte. For the line filter and the row filter.
func TestFilterFailsMidStreamAndResumes(t *testing.T) {
	for _, mode := range []string{"lines", "rows"} {
		t.Run(mode, func(t *testing.T) {
			url, redisSrv := flakyAPI(t)
			t.Setenv("SUPPRESSD_URL", url)
			t.Setenv("SUPPRESSD_API_KEY", flakyKey)
			in, want := testAudience(mode == "rows")
			dir := t.TempDir()
			inPath, outPath := filepath.Join(dir, "audience.csv"), filepath.Join(dir, "upload.csv")
			require.NoError(t, os.WriteFile(inPath, in, 0o600))
			args := []string{"filter", "--in", inPath, "--out", outPath}
			if mode == "rows" {
				args = append(args, "--template", "google")
			}

			var errb testenv.Buffer
			code := make(chan int, 1)
			go func() { code <- run(context.Background(), args, stdio{out: io.Discard, err: &errb}) }()
			state := outPath + ".partial.json"
			deadline := time.Now().Add(60 * time.Second)
			for {
				if _, err := os.Stat(state); err == nil {
					break
				}
				select {
				case c := <-code:
					t.Fatalf("the run ended (exit %d) before Redis could be stopped: %s", c, errb.String())
				default:
				}
				require.True(t, time.Now().Before(deadline), "no checkpoint: %s", errb.String())
				time.Sleep(2 * time.Millisecond)
			}
			redisSrv.Stop()
			require.Equal(t, 1, <-code, errb.String())
			require.NoFileExists(t, outPath, "nothing under the target's name")
			require.Contains(t, errb.String(), "nothing was written to "+outPath)
			require.Contains(t, errb.String(), "run again with --resume")
			require.Contains(t, errb.String(), "unavailable")

			var st filterState
			b, err := os.ReadFile(state)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &st))
			require.Positive(t, st.Total)
			require.Less(t, st.Total, int64(flakyPeople), "the run failed midway")
			partial, err := os.ReadFile(outPath + ".partial")
			require.NoError(t, err)
			require.Equal(t, st.OutputBytes, int64(len(partial)))
			require.Equal(t, string(want[:len(partial)]), string(partial), "the partial output is a prefix of the answer")
			require.NotContains(t, string(b), "example.org", "the checkpoint holds no identifier")

			redisSrv.Start()
			require.Eventually(t, func() bool {
				resp, err := http.Get(url + "/readyz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}, 30*time.Second, 20*time.Millisecond, "the API is ready again")
			var out, errResumed bytes.Buffer
			started := time.Now()
			require.NoError(t, runCommand(context.Background(), &out, &errResumed, append(args, "--resume", "--progress")...))
			if time.Since(started) > time.Second { // long enough for the progress line to be drawn
				bar := regexp.MustCompile(`\[[#.]{30}\] +[0-9.]+%  ([0-9]+) ` + mode + ` answered  [0-9]+ ` + mode + `/s  ETA `)
				m := bar.FindStringSubmatch(errResumed.String())
				require.NotNil(t, m, "a plain file's progress is a bar of the input answered: %q", errResumed.String())
				n, _ := strconv.ParseInt(m[1], 10, 64)
				require.GreaterOrEqual(t, n, st.Total, "answered lines count the earlier run's too")
			}
			require.Contains(t, errResumed.String(), fmt.Sprintf("filtered %d %s", flakyPeople, mode))
			malformed := 0
			if mode == "rows" {
				malformed = 4
				require.Contains(t, errResumed.String(), "malformed rows (dropped) start on lines 3, 50003, 100003, 150003\n",
					"the malformed rows of both runs, numbered in the whole file")
			}
			require.Contains(t, errResumed.String(), fmt.Sprintf("%d allowed, %d suppressed, %d malformed", flakyPeople-flakyPeople/100-malformed, flakyPeople/100, malformed))
			require.Contains(t, errResumed.String(), fmt.Sprintf("resumed after %d %s answered by the earlier run", st.Total, mode))
			got, err := os.ReadFile(outPath)
			require.NoError(t, err)
			require.Equal(t, len(want), len(got))
			require.True(t, bytes.Equal(want, got), "the resumed run's file is the whole answer, byte for byte")
			require.NoFileExists(t, outPath+".partial")
			require.NoFileExists(t, state)
		})
	}
}

// TestFilterFailsFromStdin: input that cannot be read again (stdin, here
// gzip) cannot be resumed: a failure leaves nothing at all. Its progress
// counts answered lines and, the total being unknown, shows bytes read and
// a rate.
func TestFilterFailsFromStdin(t *testing.T) {
	url, redisSrv := flakyAPI(t)
	t.Setenv("SUPPRESSD_URL", url)
	t.Setenv("SUPPRESSD_API_KEY", flakyKey)
	outPath := filepath.Join(t.TempDir(), "upload.txt")
	pr, pw := io.Pipe()
	defer pr.Close()
	zw := gzip.NewWriter(pw)
	var errb testenv.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), []string{"filter", "--out", outPath, "--progress"}, stdio{in: pr, out: io.Discard, err: &errb})
	}()
	write := func(from, n int) error {
		for i := from; i < from+n; i++ {
			if _, err := fmt.Fprintln(zw, hexSHA(person(i))); err != nil {
				return err
			}
		}
		return zw.Flush()
	}
	require.NoError(t, write(0, 5000))
	answered := regexp.MustCompile(`([1-9][0-9]*) lines answered  [0-9]+ lines/s  [0-9.]+ MB read  [0-9.]+ MB/s`)
	require.Eventually(t, func() bool { return answered.MatchString(errb.String()) }, 30*time.Second, 10*time.Millisecond,
		"progress counts answered lines and shows bytes read: %q", errb.String())
	require.NoFileExists(t, outPath+".partial.json", "stdin cannot be resumed: no checkpoint is kept")
	redisSrv.Stop()
	go func() {
		for i := 5000; write(i, 1000) == nil; i += 1000 {
		}
	}()
	require.Equal(t, 1, <-code, errb.String())
	pr.CloseWithError(io.ErrClosedPipe)
	require.NoFileExists(t, outPath)
	require.NoFileExists(t, outPath+".partial")
	require.NoFileExists(t, outPath+".partial.json")
	require.Contains(t, errb.String(), "nothing was written to "+outPath)
	require.NotContains(t, errb.String(), "--resume")
}

// TestFilterResumeRefusesAnotherRun: --resume continues only the run that
// failed: not another input, not other parameters.
func TestFilterResumeRefusesAnotherRun(t *testing.T) {
	dir := t.TempDir()
	inPath, outPath := filepath.Join(dir, "a.csv"), filepath.Join(dir, "up.csv")
	require.NoError(t, os.WriteFile(inPath, []byte("Email\n"+hexSHA("a@example.org")+"\n"), 0o600))
	t.Setenv("SUPPRESSD_API_KEY", "unused")
	var out, errb bytes.Buffer
	err := runCommand(context.Background(), &out, &errb, "filter", "--template", "google", "--in", inPath, "--out", outPath, "--resume")
	require.ErrorContains(t, err, "exit 2")
	require.Contains(t, errb.String(), "no failed run to resume")

	abs, _ := filepath.Abs(inPath)
	st, _ := os.Stat(inPath)
	saved := filterState{Version: 1, Mode: "rows", Query: "template=meta", Input: abs, InputSize: st.Size(), InputModTime: st.ModTime().UTC(), HeaderBytes: 6}
	b, _ := json.Marshal(saved)
	require.NoError(t, os.WriteFile(outPath+".partial.json", b, 0o600))
	require.NoError(t, os.WriteFile(outPath+".partial", []byte("Email\n"), 0o600))
	errb.Reset()
	err = runCommand(context.Background(), &out, &errb, "filter", "--template", "google", "--in", inPath, "--out", outPath, "--resume")
	require.ErrorContains(t, err, "exit 2")
	require.Contains(t, errb.String(), `the earlier run asked "template=meta"`)
	require.NoError(t, os.WriteFile(inPath, []byte("Email\n"+hexSHA("b@example.org")+"\n"+hexSHA("c@example.org")+"\n"), 0o600))
	errb.Reset()
	err = runCommand(context.Background(), &out, &errb, "filter", "--template", "meta", "--in", inPath, "--out", outPath, "--resume")
	require.ErrorContains(t, err, "exit 2")
	require.Contains(t, errb.String(), "the input is not the earlier run's")
	require.NoFileExists(t, outPath)

	errb.Reset()
	err = runCommand(context.Background(), &out, &errb, "filter", "--in", "-", "--out", outPath, "--resume")
	require.ErrorContains(t, err, "exit 2")
	require.Contains(t, errb.String(), "--resume needs --in and --out files")
	errb.Reset()
	err = runCommand(context.Background(), &out, &errb, "filter", "--template", "google", "--type", "phone_sha256")
	require.ErrorContains(t, err, "exit 2")
	require.Contains(t, errb.String(), "--type is for one hash per line")
}
