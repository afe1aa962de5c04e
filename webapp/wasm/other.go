//go:build !(js && wasm)

// Command wasm is kanal's client SDK compiled to WebAssembly for the web
// app; it runs only in a browser (GOOS=js GOARCH=wasm, see main.go). Build
// it with go generate ./webapp.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "kanal.wasm runs in a browser: build it with go generate ./webapp (GOOS=js GOARCH=wasm)")
	os.Exit(2)
}
