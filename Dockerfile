# abacus container image. Build it with `make image` (it runs the one
# `docker build` command this file is written for; test/chart checks that the
# two agree).
#
# Two stages: a Go toolchain with cgo builds the binary, and distroless
# "base" runs it. base (not "static") because confluent-kafka-go links its
# bundled static librdkafka against glibc, so the binary needs glibc at run
# time; the nonroot tag runs as uid/gid 65532.
#
# BuildKit (the default builder of Docker 23 and later) is assumed for the
# cache mounts, which keep the module and build caches between builds.

FROM golang:1.26-bookworm AS build

# VERSION is stamped into the binary as main.version, exactly as the
# Makefile's build target does (`make image` passes --build-arg VERSION).
ARG VERSION=dev
ARG COMMIT=

WORKDIR /src

# Modules first, so that editing the source does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY cmd/ cmd/
COPY internal/ internal/

# CGO_ENABLED=1: confluent-kafka-go carries a static librdkafka for
# linux/amd64 (and arm64) glibc, so no extra C library is installed.
# /out/data is made here because the runtime image has no shell to mkdir.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags "-X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/abacus ./cmd/server \
    && mkdir -p /out/data

FROM gcr.io/distroless/base-debian12:nonroot AS runtime

COPY --from=build /out/abacus /usr/local/bin/abacus
# The state dir: owned by the nonroot user so that a plain `docker run` can
# write to it; in Kubernetes a PVC is mounted here and fsGroup makes it
# writable.
COPY --from=build --chown=65532:65532 /out/data /data

ENV ABACUS_STATE_DIR=/data \
    ABACUS_HTTP_ADDR=:8080

WORKDIR /data
USER 65532:65532
EXPOSE 8080
VOLUME ["/data"]

ENTRYPOINT ["/usr/local/bin/abacus"]
