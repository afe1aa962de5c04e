// Command kanal is kanal's command-line client: it signs a citizen up,
// enrols this machine as a device with a key that never leaves it, logs in
// with that key (and the password, for level substantial), manages the
// account's devices, and lets an operator create and verify organisations.
//
// Everything the client keeps — device key, certificate, tokens — lives in
// one key store file under KANAL_HOME, encrypted with a passphrase
// (identity/keystore). Run "kanal help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err as one line and says how to exit: 0 on success, 2
// for a usage error (with a pointer to the help), the status an exitStatus
// asks for (3: a witness saw a split view), 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "kanal: %v\n", err)
	var u *usageError
	if errors.As(err, &u) {
		if u.cmd != "" {
			fmt.Fprintf(stderr, "Run 'kanal help %s' for usage.\n", u.cmd)
		} else {
			fmt.Fprintf(stderr, "Run 'kanal help' for usage.\n")
		}
		return 2
	}
	var st *exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	return 1
}
