package audience

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

type scanned struct {
	raw     string
	line    int64
	fields  []string
	problem string
}

func scanAll(t *testing.T, in io.Reader, max int) []scanned {
	t.Helper()
	s := NewScanner(in, max)
	var out []scanned
	for {
		r, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		sc := scanned{raw: string(r.Raw), line: r.Line, problem: r.Problem}
		for i := 0; i < r.NumFields(); i++ {
			sc.fields = append(sc.fields, string(r.Field(i)))
		}
		out = append(out, sc)
	}
	return out
}

// TestScannerKeepsEveryByte: whatever the quoting, the records' bytes put
// back together are the input, so a row kept by the filter is echoed as
// it was sent; and the fields are what encoding/csv reads.
func TestScannerKeepsEveryByte(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []scanned
	}{
		{"LF", "Email,Phone\na@x.org,+1800\n", []scanned{
			{raw: "Email,Phone\n", line: 1, fields: []string{"Email", "Phone"}},
			{raw: "a@x.org,+1800\n", line: 2, fields: []string{"a@x.org", "+1800"}},
		}},
		{"CRLF, last line without an end", "Email,Phone\r\na@x.org,\r\nb@x.org,+1", []scanned{
			{raw: "Email,Phone\r\n", line: 1, fields: []string{"Email", "Phone"}},
			{raw: "a@x.org,\r\n", line: 2, fields: []string{"a@x.org", ""}},
			{raw: "b@x.org,+1", line: 3, fields: []string{"b@x.org", "+1"}},
		}},
		{"BOM kept in the bytes, not in the first name", "\uFEFFEmail,Zip\r\na@x.org,1\r\n", []scanned{
			{raw: "\uFEFFEmail,Zip\r\n", line: 1, fields: []string{"Email", "Zip"}},
			{raw: "a@x.org,1\r\n", line: 2, fields: []string{"a@x.org", "1"}},
		}},
		{"quoted fields: commas, doubled quotes, line ends inside", "fn,email\n\"Smith, \"\"Jo\"\"\nline two\",\"a@x.org\"\r\nnext,\"\"\n", []scanned{
			{raw: "fn,email\n", line: 1, fields: []string{"fn", "email"}},
			{raw: "\"Smith, \"\"Jo\"\"\nline two\",\"a@x.org\"\r\n", line: 2, fields: []string{"Smith, \"Jo\"\nline two", "a@x.org"}},
			{raw: "next,\"\"\n", line: 4, fields: []string{"next", ""}},
		}},
		{"blank lines are records of their own", "a\n\n\r\nb\n", []scanned{
			{raw: "a\n", line: 1, fields: []string{"a"}},
			{raw: "\n", line: 2, fields: []string{""}},
			{raw: "\r\n", line: 3, fields: []string{""}},
			{raw: "b\n", line: 4, fields: []string{"b"}},
		}},
		{"a bare quote spoils one record, not the next", "a,b\"c\nd,e\n", []scanned{
			{raw: "a,b\"c\n", line: 1, problem: "a quote inside an unquoted field"},
			{raw: "d,e\n", line: 2, fields: []string{"d", "e"}},
		}},
		{"text after a closing quote", "\"a\"b,c\nd\n", []scanned{
			{raw: "\"a\"b,c\n", line: 1, problem: "text after a closing quote"},
			{raw: "d\n", line: 2, fields: []string{"d"}},
		}},
		{"an unclosed quote runs to the end", "a\n\"b\nc\n", []scanned{
			{raw: "a\n", line: 1, fields: []string{"a"}},
			{raw: "\"b\nc\n", line: 2, problem: "a quoted field is not closed"},
		}},
		{"a NUL byte", "a\x00b,c\n", []scanned{{raw: "a\x00b,c\n", line: 1, problem: "a NUL byte"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				in   io.Reader
			}{{"whole", strings.NewReader(tc.in)}, {"byte by byte", iotest.OneByteReader(strings.NewReader(tc.in))}} {
				got := scanAll(t, r.in, 0)
				want := slices.Clone(tc.want)
				for i := range got { // the fields of a broken record are unreliable
					if i < len(want) && want[i].problem != "" {
						got[i].fields, want[i].fields = nil, nil
					}
				}
				require.Equal(t, want, got, r.name)
				var joined strings.Builder
				for _, s := range got {
					joined.WriteString(s.raw)
				}
				require.Equal(t, tc.in, joined.String(), "the records' bytes are the input")
			}
			// Where the input is well-formed, encoding/csv reads the same
			// fields.
			cr := csv.NewReader(strings.NewReader(strings.TrimPrefix(tc.in, "\uFEFF")))
			cr.FieldsPerRecord = -1
			want, err := cr.ReadAll()
			if !slices.ContainsFunc(tc.want, func(s scanned) bool { return s.problem != "" }) {
				require.NoError(t, err)
				var got [][]string
				for _, s := range tc.want {
					if s.fields[0] != "" || len(s.fields) > 1 { // encoding/csv skips blank lines
						got = append(got, s.fields)
					}
				}
				for i := range want { // encoding/csv turns CRLF inside quotes into LF
					for j := range want[i] {
						want[i][j] = strings.ReplaceAll(want[i][j], "\r\n", "\n")
					}
				}
				require.Equal(t, want, got)
			}
		})
	}
}

func TestScannerOffsetsAndLimit(t *testing.T) {
	in := "h\r\n\"x\ny\"\r\n" + strings.Repeat("z", 100) + "\nlast\n"
	s := NewScanner(strings.NewReader(in), 50)
	var offsets, lines []int64
	var problems []string
	for {
		r, err := s.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		offsets, lines, problems = append(offsets, s.Offset()), append(lines, s.Lines()), append(problems, r.Problem)
		if r.Problem == "" {
			require.Equal(t, in[s.Offset()-int64(len(r.Raw)):s.Offset()], string(r.Raw))
		}
	}
	require.Equal(t, []int64{3, 10, 111, 116}, offsets, "where each record ends, in bytes")
	require.Equal(t, []int64{1, 3, 4, 5}, lines, "line ends read, quoted ones included")
	require.Equal(t, []string{"", "", "longer than 50 bytes", ""}, problems, "a record over the limit is reported, and the next one is read")
}

func TestScannerReadError(t *testing.T) {
	boom := errors.New("boom")
	s := NewScanner(io.MultiReader(strings.NewReader("a,b\nc"), iotest.ErrReader(boom)), 0)
	r, err := s.Next()
	require.NoError(t, err)
	require.Equal(t, "a,b\n", string(r.Raw))
	_, err = s.Next()
	require.ErrorIs(t, err, boom)
}

func TestScannerBlank(t *testing.T) {
	s := NewScanner(strings.NewReader("\n \t\r\n\"\"\n,\n a\n"), 0)
	var blank []bool
	for {
		r, err := s.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		blank = append(blank, r.Blank())
	}
	require.Equal(t, []bool{true, true, false, false, false}, blank, "empty and white lines are blank; a quoted empty field or a comma is not")
}

func TestScannerEmpty(t *testing.T) {
	for _, in := range []string{"", "\uFEFF"} {
		s := NewScanner(bytes.NewReader([]byte(in)), 0)
		r, err := s.Next()
		if in == "" {
			require.ErrorIs(t, err, io.EOF)
			continue
		}
		require.NoError(t, err)
		require.True(t, r.Blank(), "a byte order mark alone is a blank record")
		_, err = s.Next()
		require.ErrorIs(t, err, io.EOF)
	}
}

// TestScannerPlainLinesAsTheStateMachine: lines without quotes take a fast
// path; it reads them exactly as the byte-by-byte state machine does (a
// partial line, as a line longer than the read buffer comes, takes the
// state machine).
func TestScannerPlainLinesAsTheStateMachine(t *testing.T) {
	for _, in := range []string{"a,b,c\n", "a,,\r\n", ",\n", "\r\n", "\n", ",a\r\n", "a\rb,c\n", " , \t,x \r\n", "a,b"} {
		plain := &Record{}
		ps := parse{r: plain}
		plain.Raw = []byte(in)
		if !ps.feedPlain([]byte(in)) {
			require.Equal(t, "a,b", in, "only the line without an end is not plain")
			continue
		}
		slow := &Record{Raw: []byte(in)}
		ps2 := parse{r: slow}
		require.Equal(t, 1, ps2.feed([]byte(in)))
		require.Equal(t, slow.fields, plain.fields, "%q", in)
		require.Equal(t, slow.content, plain.content, "%q", in)
		require.True(t, ps.ended && ps2.ended)
	}
}
