package kanaldtest

import (
	"fmt"
	"os"
	"testing"
)

// Main is the TestMain of a package whose tests run kanald: it builds
// kanald into a temporary directory and sets *bin to its path, calls each
// of also with that directory (to build more binaries there), runs the
// tests, removes the directory and exits with the tests' code. A failed
// build exits with 1 before any test runs. m is the package's *testing.M,
// or a wrapper of it whose Run checks more after the tests (cmd/kanal
// checks there that the tests exercised all of docs/openapi.yaml).
func Main(m interface{ Run() int }, bin *string, also ...func(dir string) error) {
	dir, err := os.MkdirTemp("", "kanald-bin")
	if err != nil {
		panic(err)
	}
	code := 1
	if err := build(dir, bin, also); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir string, bin *string, also []func(string) error) error {
	var err error
	if *bin, err = Build(dir); err != nil {
		return err
	}
	for _, f := range also {
		if err := f(dir); err != nil {
			return err
		}
	}
	return nil
}

// NATSURL returns the NATS server of KANAL_TEST_NATS, for tests of two
// kanald nodes on one bus. Without it the test is skipped, and under CI
// (CI set) it fails: there the two-node tests must run.
func NATSURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("KANAL_TEST_NATS")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KANAL_TEST_NATS is not set under CI")
		}
		t.Skip("KANAL_TEST_NATS not set: two-node test not run")
	}
	return u
}
