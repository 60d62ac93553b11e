# syntax=docker/dockerfile:1
# Build stage: module files first so dependency downloads are cached apart
# from source changes.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/careplan-server ./cmd/careplan-server \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/careplan ./cmd/careplan

# Run stage: a small image with no shell tools beyond what debug needs, run
# as a non-root user that owns only the data volume.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/careplan-server /out/careplan /usr/local/bin/
USER nonroot:nonroot
VOLUME ["/data"]
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/careplan-server", "--addr=0.0.0.0:50051", "--data=/data/careplan.db"]
