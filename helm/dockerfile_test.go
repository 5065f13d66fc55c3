package helm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The Dockerfile cannot be built here (no Docker engine), so its rules are
// checked by reading it: a small parser of the instructions, then the rules
// the image must keep.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is a FROM and what follows it.
type stage struct {
	from, name string
	instrs     []instruction
}

func parseDockerfile(src string) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var s stage
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					s.name = f[i+1]
					i++
				case s.from == "":
					s.from = f[i]
				}
			}
			stages = append(stages, s)
			return nil
		}
		if in.cmd == "ARG" && len(stages) == 0 {
			return nil // global ARG before the first FROM
		}
		if len(stages) == 0 {
			return fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		return nil
	}
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments (and parser directives) inside or between instructions
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return stages, nil
}

var (
	distrolessNonroot = regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot@sha256:[0-9a-f]{64}$`)
	ldflagsVersion    = regexp.MustCompile(`-ldflags[= ]["']?[^"']*-X main\.version=\$\{?VERSION\}?`)
	// pinned is an image reference with both a tag (for readers) and the
	// digest of what is pulled: name:tag@sha256:<64 lowercase hex>.
	pinned = regexp.MustCompile(`^[a-z0-9][a-z0-9./_-]*(:[0-9]+)?(/[a-z0-9._-]+)*:([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})@sha256:[0-9a-f]{64}$`)
	// numericUser is USER uid or uid:gid, both numbers.
	numericUser = regexp.MustCompile(`^([0-9]+)(?::([0-9]+))?$`)
)

// checkDockerfile returns every rule the Dockerfile breaks.
func checkDockerfile(src string) error {
	stages, err := parseDockerfile(src)
	if err != nil {
		return err
	}
	var errs []error
	fail := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if len(stages) < 2 {
		return fmt.Errorf("not multi-stage: %d stage(s)", len(stages))
	}
	final := stages[len(stages)-1]
	if !distrolessNonroot.MatchString(final.from) {
		fail("final FROM %q is not gcr.io/distroless/static(-debianN):nonroot pinned by digest", final.from)
	}
	// Every base image is pinned by digest, written out: a build argument
	// in FROM could swap a pinned image for anything at build time.
	for i, st := range stages {
		if slices.ContainsFunc(stages[:i], func(prev stage) bool { return prev.name != "" && prev.name == st.from }) {
			continue // FROM an earlier stage
		}
		switch {
		case strings.Contains(st.from, "$"):
			fail("FROM %q: a build argument in the base image; write the pinned reference out", st.from)
		case !pinned.MatchString(st.from):
			fail("FROM %q is not pinned by digest (name:tag@sha256:<64 lowercase hex digits>)", st.from)
		}
	}

	// The final stage: the binary copied from a build stage, nothing run.
	var build *stage
	var entrypoint, cmd, user string
	labels := map[string]string{}
	for _, in := range final.instrs {
		switch in.cmd {
		case "RUN":
			fail("line %d: RUN in the final stage (it has no shell, and must stay just the binary)", in.line)
		case "ADD":
			fail("line %d: ADD in the final stage", in.line)
		case "COPY":
			m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args)
			if m == nil {
				fail("line %d: COPY from the build context into the final stage; only the built binary belongs there", in.line)
				continue
			}
			for i := range stages[:len(stages)-1] {
				if stages[i].name == m[1] {
					build = &stages[i]
				}
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "LABEL":
			for _, m := range regexp.MustCompile(`(\S+)="([^"]*)"`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = m[2]
			}
		}
	}
	// A numeric, non-root USER: the kubelet enforces runAsNonRoot only
	// against a numeric user, and root in any spelling is refused.
	switch m := numericUser.FindStringSubmatch(user); {
	case user == "":
		fail("no USER in the final stage: the image would run as the base's user, whatever it becomes")
	case m == nil:
		fail("USER %s is not numeric (uid:gid): runAsNonRoot cannot be verified against a name", user)
	case m[1] == "0" || strings.TrimLeft(m[1], "0") == "":
		fail("USER %s: uid 0 is root", user)
	case m[2] != "" && strings.TrimLeft(m[2], "0") == "":
		fail("USER %s: gid 0 is root's group", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 || ep[0] != "/suppressd" {
		fail("ENTRYPOINT %q is not the exec form [\"/suppressd\"]", entrypoint)
	}
	var cm []string
	if err := json.Unmarshal([]byte(cmd), &cm); err != nil || len(cm) != 1 || cm[0] != "serve" {
		fail("CMD %q is not the exec form [\"serve\"]", cmd)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision", "created"} {
		if labels["org.opencontainers.image."+l] == "" {
			fail("LABEL org.opencontainers.image.%s missing", l)
		}
	}
	if !strings.Contains(labels["org.opencontainers.image.version"], "VERSION") {
		fail("LABEL org.opencontainers.image.version is not the VERSION build argument")
	}
	// The base labels say what the image is built on: the final FROM.
	if name, digest, ok := strings.Cut(final.from, "@"); ok {
		if labels["org.opencontainers.image.base.name"] != name {
			fail("LABEL org.opencontainers.image.base.name %q does not match the final FROM %q", labels["org.opencontainers.image.base.name"], name)
		}
		if labels["org.opencontainers.image.base.digest"] != digest {
			fail("LABEL org.opencontainers.image.base.digest %q does not match the final FROM's digest %s", labels["org.opencontainers.image.base.digest"], digest)
		}
	}
	if build == nil {
		fail("the final stage copies nothing from a named build stage")
		return errors.Join(errs...)
	}

	// The build stage: modules first, then sources, then a static,
	// trimmed, version-stamped build.
	download, sources, built := -1, -1, false
	hasVersionArg := false
	for i, in := range build.instrs {
		switch in.cmd {
		case "COPY", "ADD":
			files := strings.Fields(in.args)
			onlyModules := true
			for _, f := range files[:len(files)-1] {
				if !strings.HasPrefix(f, "--") && f != "go.mod" && f != "go.sum" {
					onlyModules = false
				}
			}
			if !onlyModules && sources < 0 {
				sources = i
			}
		case "ARG":
			if strings.HasPrefix(in.args, "VERSION") {
				hasVersionArg = true
			}
		case "RUN":
			if strings.Contains(in.args, "go mod download") && download < 0 {
				download = i
			}
			if strings.Contains(in.args, "go build") {
				built = true
				if !strings.Contains(in.args, "CGO_ENABLED=0") && !stageEnv(build, "CGO_ENABLED=0") {
					fail("line %d: go build without CGO_ENABLED=0: the distroless static image has no libc", in.line)
				}
				if !strings.Contains(in.args, "-trimpath") {
					fail("line %d: go build without -trimpath", in.line)
				}
				if !ldflagsVersion.MatchString(in.args) {
					fail("line %d: go build without -ldflags \"-X main.version=${VERSION}\"", in.line)
				}
				if !hasVersionArg {
					fail("line %d: no ARG VERSION before the build", in.line)
				}
			}
		}
	}
	switch {
	case download < 0:
		fail("no RUN go mod download in the build stage")
	case sources < 0:
		fail("the build stage copies no sources")
	case sources < download:
		fail("the sources are copied before go mod download: every source change would download the modules again")
	}
	if !built {
		fail("no go build in the build stage")
	}
	return errors.Join(errs...)
}

func stageEnv(s *stage, kv string) bool {
	for _, in := range s.instrs {
		if in.cmd == "ENV" && strings.Contains(in.args, kv) {
			return true
		}
	}
	return false
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	require.NoError(t, err)
	src := string(b)
	require.NoError(t, checkDockerfile(src))
	stages, err := parseDockerfile(src)
	require.NoError(t, err)

	// What it stamps and builds exists.
	main, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "suppressd", "main.go"))
	require.NoError(t, err)
	require.Regexp(t, `(?m)^var version = `, string(main), "-X main.version needs a package-level var version in cmd/suppressd")
	require.Contains(t, src, "./cmd/suppressd")

	// The builder's Go is at least the one go.mod asks for: the official
	// image sets GOTOOLCHAIN=local, so an older one fails the build.
	goMod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	require.NoError(t, err)
	want := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(goMod))
	require.NotNil(t, want, "go.mod has no go directive")
	var builder string
	for _, st := range stages {
		if strings.HasPrefix(st.from, "golang:") {
			builder = st.from
		}
	}
	require.NotEmpty(t, builder, "no golang:<version> build stage")
	tag := strings.TrimPrefix(strings.SplitN(builder, "@", 2)[0], "golang:")
	require.GreaterOrEqual(t, goVersion(t, strings.SplitN(tag, "-", 2)[0]), goVersion(t, want[1]),
		"builder golang:%s is older than go.mod's go %s", tag, want[1])

	// The chart runs the pods as the image's user: a runAsUser or
	// runAsGroup other than the image's USER would be a second identity
	// to keep in step (files, fsGroup), and runAsNonRoot works without them.
	user := ""
	for _, in := range stages[len(stages)-1].instrs {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	m := numericUser.FindStringSubmatch(user)
	require.NotNil(t, m)
	psc := readValues(t, filepath.Join(chartDir, "values.yaml"))["podSecurityContext"].(map[string]any)
	for k, id := range map[string]string{"runAsUser": m[1], "runAsGroup": m[2], "fsGroup": m[2]} {
		if v, ok := psc[k]; ok && id != "" {
			require.Equal(t, id, fmt.Sprint(v), "podSecurityContext.%s is not the image's USER %s", k, user)
		}
	}

	// The build context keeps out what is not built.
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	require.NoError(t, err)
	for _, p := range []string{".git", "helm", "**/*.test", "/suppressd"} {
		require.Contains(t, strings.Fields(string(ignore)), p, ".dockerignore")
	}

	// The checks bite: each edit breaks one rule. The FROM lines are read
	// from the file, so a digest update does not touch this test.
	buildFrom := lineWith(t, src, "FROM --platform=$BUILDPLATFORM golang:")
	finalFrom := lineWith(t, src, "FROM gcr.io/distroless/")
	builderRef := strings.Fields(buildFrom)[2]
	finalRef := strings.Fields(finalFrom)[1]
	baseDigest := lineWith(t, src, "org.opencontainers.image.base.digest=")
	for _, tc := range []struct{ name, old, new, err string }{
		{"single stage", finalFrom + "\n", "", "not multi-stage"},
		{"sources before modules", "COPY go.mod go.sum ./\n", "COPY . .\n", "sources are copied before go mod download"},
		{"cgo", "CGO_ENABLED=0 ", "", "without CGO_ENABLED=0"},
		{"no trimpath", "-trimpath ", "", "without -trimpath"},
		{"no version", "-X main.version=${VERSION}", "", `without -ldflags "-X main.version=${VERSION}"`},
		{"root base", finalRef, "gcr.io/distroless/static-debian13:latest" + finalRef[strings.Index(finalRef, "@"):], "is not gcr.io/distroless/static"},
		{"alpine base", finalFrom, "FROM alpine:3", "is not gcr.io/distroless/static"},
		{"builder by tag only", builderRef, strings.SplitN(builderRef, "@", 2)[0], "is not pinned by digest"},
		{"runtime by tag only", finalRef, strings.SplitN(finalRef, "@", 2)[0], "is not pinned by digest"},
		{"builder by digest only", builderRef, "golang@" + strings.SplitN(builderRef, "@", 2)[1], "is not pinned by digest"},
		{"truncated digest", builderRef, builderRef[:len(builderRef)-1], "is not pinned by digest"},
		{"upper-case digest", builderRef, strings.ToUpper(builderRef[:len(builderRef)-8]) + builderRef[len(builderRef)-8:], "is not pinned by digest"},
		{"base image from a build argument", buildFrom, "ARG GO_IMAGE=" + builderRef + "\nFROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build", "a build argument in the base image"},
		{"named user", "USER 65532:65532\n", "USER nonroot:nonroot\n", "is not numeric"},
		{"root user", "USER 65532:65532\n", "USER root\n", "is not numeric"},
		{"uid 0", "USER 65532:65532\n", "USER 0:65532\n", "uid 0 is root"},
		{"uid 00", "USER 65532:65532\n", "USER 00\n", "uid 0 is root"},
		{"gid 0", "USER 65532:65532\n", "USER 65532:0\n", "gid 0 is root's group"},
		{"no user", "USER 65532:65532\n", "", "no USER in the final stage"},
		{"base label out of step", baseDigest, otherDigest(baseDigest), "does not match the final FROM's digest"},
		{"shell entrypoint", `ENTRYPOINT ["/suppressd"]`, `ENTRYPOINT /suppressd`, "is not the exec form"},
		{"run in final", "USER 65532:65532\n", "RUN chmod 0755 /suppressd\nUSER 65532:65532\n", "RUN in the final stage"},
		{"context in final", "COPY --from=build /out/suppressd /suppressd\n", "COPY --from=build /out/suppressd /suppressd\nCOPY docs /docs\n", "COPY from the build context"},
		{"no oci labels", "LABEL org.opencontainers.image.title", "LABEL org.example.title", "org.opencontainers.image.title missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, src, tc.old, "the mutation's target moved: update the test")
			require.ErrorContains(t, checkDockerfile(strings.Replace(src, tc.old, tc.new, 1)), tc.err)
		})
	}
}

// lineWith returns the one line of src that contains s, without its newline.
func lineWith(t *testing.T, src, s string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(src, "\n") {
		if strings.Contains(l, s) {
			found = append(found, l)
		}
	}
	require.Len(t, found, 1, "lines with %q", s)
	return found[0]
}

// otherDigest changes the first hex digit after "sha256:" in s.
func otherDigest(s string) string {
	i := strings.Index(s, "sha256:") + len("sha256:")
	c := byte('0')
	if s[i] == '0' {
		c = '1'
	}
	return s[:i] + string(c) + s[i+1:]
}

// goVersion turns "1.26.8" into a number that orders like the version.
func goVersion(t *testing.T, v string) int {
	t.Helper()
	n := 0
	parts := strings.Split(v, ".")
	require.LessOrEqual(t, len(parts), 3, "Go version %q", v)
	for i := 0; i < 3; i++ {
		x := 0
		if i < len(parts) {
			var err error
			x, err = strconv.Atoi(parts[i])
			require.NoError(t, err, "Go version %q", v)
		}
		n = n*1000 + x
	}
	return n
}
