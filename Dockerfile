# syntax=docker/dockerfile:1
# Build stage: module files first so dependency downloads are cached apart
# from source changes.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/careplan-server ./cmd/careplan-server \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/careplan ./cmd/careplan \
 && mkdir -p /out/data

# Run stage: a small image with no shell, run as a non-root user (65532)
# that owns only the data volume.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/careplan-server /out/careplan /usr/local/bin/
# A new named volume takes this directory's owner, so the non-root user can
# write its data file there.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
EXPOSE 50051 9090
# The probe is the server binary itself (`careplan-server health`), so the
# image needs no shell or extra tool. Add --tls/--tls-ca when serving TLS.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/careplan-server", "health", "--addr", "127.0.0.1:50051"]
ENTRYPOINT ["/usr/local/bin/careplan-server", "--addr=0.0.0.0:50051", "--data=/data/careplan.db", "--metrics-addr=0.0.0.0:9090"]
