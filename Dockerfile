# syntax=docker/dockerfile:1
#
# suppressd: one static binary on distroless, run as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t suppressd .
#   docker run --rm suppressd version
#
# The builder runs on the build machine's platform and cross-compiles for the
# target's (docker buildx build --platform linux/amd64,linux/arm64 ...).
#
# Both base images are pinned by digest: a tag moves when its image is rebuilt,
# the digest does not, so the same commit builds on the same bases. The tag is
# kept for readers and must name the same image. The digests are those of the
# multi-platform index (not of one platform's manifest), so every --platform
# resolves. To update one, resolve the tag's index digest and replace tag and
# digest together (here and in the base.name/base.digest labels below):
#
#   docker buildx imagetools inspect golang:1.26.8 | sed -n 's/^Digest: *//p'
#   crane digest gcr.io/distroless/static-debian13:nonroot
#
# The golang tag follows the go directive of go.mod: the official image sets
# GOTOOLCHAIN=local and will not build a module that asks for a newer Go.

FROM --platform=$BUILDPLATFORM golang:1.26.8@sha256:0f063af2d465d8dcae54cce04278ada488b96f77b42449c8d071e47d016cc65a AS build
WORKDIR /src
# Modules first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
# Then the sources (.dockerignore keeps out tests' binaries, the chart, docs).
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# Static (no cgo: the runtime image has no libc), reproducible paths, the
# version in `suppressd version`.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/suppressd ./cmd/suppressd

# The runtime: CA certificates, tzdata, /etc/passwd with nonroot (65532); no
# shell, no package manager.
FROM gcr.io/distroless/static-debian13:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="suppressd" \
      org.opencontainers.image.description="Event-driven marketing suppression and opt-out service" \
      org.opencontainers.image.source="https://github.com/suppressd/suppressd" \
      org.opencontainers.image.url="https://github.com/suppressd/suppressd" \
      org.opencontainers.image.documentation="https://github.com/suppressd/suppressd/blob/main/docs/operations.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian13:nonroot" \
      org.opencontainers.image.base.digest="sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3"
COPY --from=build /out/suppressd /suppressd
# Numeric, the image's nonroot user and group: the kubelet can only verify
# runAsNonRoot against a numeric USER (a name like nonroot is refused unless
# the pod also sets runAsUser).
USER 65532:65532
# The API's port (SUPPRESSD_API_ADDR) and the consumer's ops port (SUPPRESSD_OPS_ADDR).
EXPOSE 8080 9090
ENTRYPOINT ["/suppressd"]
CMD ["serve"]
