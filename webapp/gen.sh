#!/bin/sh
# Builds static/kanal.wasm.gz (the client SDK for the browser) and copies
# the wasm_exec.js of the Go that built it. Run by go generate ./webapp.
set -eu
cd "$(dirname "$0")"
GOOS=js GOARCH=wasm go build -trimpath -ldflags=-s -o static/kanal.wasm ./wasm
gzip -9nf static/kanal.wasm
cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" static/wasm_exec.js
