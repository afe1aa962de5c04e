#!/bin/sh
# Builds static/kanal.wasm.gz (the client SDK for the browser) and copies
# the wasm_exec.js of the Go that built it. Run by go generate ./webapp;
# TestWasmFresh runs it with another output directory (the argument) and
# compares. The build is reproducible: no paths (-trimpath), no VCS stamp
# (-buildvcs=false), no symbol table (-s), and gzip -n keeps neither name
# nor time in the header.
set -eu
cd "$(dirname "$0")"
out="${1:-static}"
GOOS=js GOARCH=wasm go build -trimpath -buildvcs=false -ldflags=-s -o "$out/kanal.wasm" ./wasm
gzip -9nf "$out/kanal.wasm"
cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" "$out/wasm_exec.js"
