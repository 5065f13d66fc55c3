# syntax=docker/dockerfile:1
#
# suppressd: one static binary on distroless, run as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t suppressd .
#   docker run --rm suppressd version
#
# The builder runs on the build machine's platform and cross-compiles for the
# target's (docker buildx build --platform linux/amd64,linux/arm64 ...).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
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
FROM gcr.io/distroless/static-debian13:nonroot
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
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian13:nonroot"
COPY --from=build /out/suppressd /suppressd
USER nonroot:nonroot
# The API's port (SUPPRESSD_API_ADDR) and the consumer's ops port (SUPPRESSD_OPS_ADDR).
EXPOSE 8080 9090
ENTRYPOINT ["/suppressd"]
CMD ["serve"]
