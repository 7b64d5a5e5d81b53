# syntax=docker/dockerfile:1
#
# The relay as a small container image: a static binary (no cgo) on
# distroless, running as a non-root user. The image holds nothing but the
# binary, CA certificates and time zone data; its health check is the
# binary's own `relay healthcheck` (see docker-compose.yml).
#
#   docker build -t mediaplatform/relay .
#   docker run --rm mediaplatform/relay --help

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOOS=linux GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/relay ./cmd/relay

# static-debian12 has CA certificates (for Svix over TLS) and tzdata; the
# nonroot tag runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /relay
USER nonroot:nonroot
# In a container the HTTP server must listen beyond loopback to be scraped;
# publish the port on the host's loopback (docker-compose.yml does).
ENV RELAY_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080 8090
ENTRYPOINT ["/relay"]
CMD ["run"]
