package helm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	distrolessNonroot = regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot(@sha256:[0-9a-f]{64})?$`)
	ldflagsVersion    = regexp.MustCompile(`-ldflags[= ]["']?[^"']*-X main\.version=\$\{?VERSION\}?`)
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
		fail("final FROM %q is not gcr.io/distroless/static(-debianN):nonroot", final.from)
	}

	// The final stage: the binary copied from a build stage, nothing run.
	var build *stage
	var entrypoint, cmd string
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
			if u := strings.Split(in.args, ":")[0]; u == "root" || u == "0" {
				fail("line %d: USER %s", in.line, in.args)
			}
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

	// What it stamps and builds exists.
	main, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "suppressd", "main.go"))
	require.NoError(t, err)
	require.Regexp(t, `(?m)^var version = `, string(main), "-X main.version needs a package-level var version in cmd/suppressd")
	require.Contains(t, src, "./cmd/suppressd")

	// The build context keeps out what is not built.
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	require.NoError(t, err)
	for _, p := range []string{".git", "helm", "**/*.test", "/suppressd"} {
		require.Contains(t, strings.Fields(string(ignore)), p, ".dockerignore")
	}

	// The checks bite: each edit breaks one rule.
	for _, tc := range []struct{ name, old, new, err string }{
		{"single stage", "FROM gcr.io/distroless/static-debian13:nonroot\n", "", "not multi-stage"},
		{"sources before modules", "COPY go.mod go.sum ./\n", "COPY . .\n", "sources are copied before go mod download"},
		{"cgo", "CGO_ENABLED=0 ", "", "without CGO_ENABLED=0"},
		{"no trimpath", "-trimpath ", "", "without -trimpath"},
		{"no version", "-X main.version=${VERSION}", "", `without -ldflags "-X main.version=${VERSION}"`},
		{"root base", "FROM gcr.io/distroless/static-debian13:nonroot\n", "FROM gcr.io/distroless/static-debian13:latest\n", "is not gcr.io/distroless/static"},
		{"alpine base", "FROM gcr.io/distroless/static-debian13:nonroot\n", "FROM alpine:3\n", "is not gcr.io/distroless/static"},
		{"root user", "USER nonroot:nonroot\n", "USER root\n", "USER root"},
		{"shell entrypoint", `ENTRYPOINT ["/suppressd"]`, `ENTRYPOINT /suppressd`, "is not the exec form"},
		{"run in final", "USER nonroot:nonroot\n", "RUN chmod 0755 /suppressd\nUSER nonroot:nonroot\n", "RUN in the final stage"},
		{"context in final", "COPY --from=build /out/suppressd /suppressd\n", "COPY --from=build /out/suppressd /suppressd\nCOPY docs /docs\n", "COPY from the build context"},
		{"no oci labels", "LABEL org.opencontainers.image.title", "LABEL org.example.title", "org.opencontainers.image.title missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, src, tc.old, "the mutation's target moved: update the test")
			require.ErrorContains(t, checkDockerfile(strings.Replace(src, tc.old, tc.new, 1)), tc.err)
		})
	}
}
