package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"
)

// secret returns the value of the environment variable name, or asks for
// it on the terminal without echo. confirm asks twice, for a new secret
// that a typo would lock the user out of. With neither a variable nor a
// terminal it fails rather than read a secret from a pipe by surprise.
func (c *cli) secret(name, prompt string, confirm bool) ([]byte, error) {
	if v := c.env(name); v != "" {
		return []byte(v), nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, fmt.Errorf("set %s or run kanal on a terminal", name)
	}
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(c.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		return b, err
	}
	v, err := read(prompt)
	if err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, errors.New("empty input")
	}
	if confirm {
		again, err := read("Repeat: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(v, again) {
			return nil, errors.New("the two entries differ")
		}
	}
	return v, nil
}

// optionalSecret is secret for a value that may be empty: without the
// variable or a terminal it is empty, and the server says if it was needed.
func (c *cli) optionalSecret(name, prompt string) ([]byte, error) {
	if v := c.env(name); v != "" {
		return []byte(v), nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, nil
	}
	fmt.Fprint(c.stderr, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.stderr)
	return b, err
}

// confirm asks for "yes" on the terminal before something binding, unless
// yes is set. Without a terminal it fails rather than assume consent.
func (c *cli) confirm(yes bool, prompt string) error {
	if yes {
		return nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return errors.New("not confirmed: run on a terminal and answer yes, or give --yes")
	}
	fmt.Fprint(c.stderr, prompt)
	var answer string
	if _, err := fmt.Fscanln(f, &answer); err != nil || answer != "yes" {
		return errors.New("not confirmed: nothing was signed")
	}
	return nil
}
