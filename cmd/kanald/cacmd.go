package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

const caUsage = `usage: kanald ca init --root-key FILE [--name NAME] [flags]
       kanald ca issue-intermediate --root-key FILE [--name NAME] [flags]

init creates a deployment CA whose root key never sits on a node: the
root's private key is written to --root-key (mode 0600; it must not exist
yet) — move it to offline storage — and KANAL_CA_DIR receives root.pem
(the root clients pin), issuing.pem and issuing.key (the intermediate the
nodes issue with). Run it before the deployment's first start.

issue-intermediate signs a new intermediate with the root key read from
--root-key and installs it in KANAL_CA_DIR; the previous one moves to
retired.pem, where clients keep trusting it for what it issued. Restart
the nodes to issue with the new one. Only this command needs the root key.

The other flags are kanald's (KANAL_CA_DIR, KANAL_DATA_DIR, …).
`

// runCA is `kanald ca <task>`.
func runCA(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "init" && args[0] != "issue-intermediate") {
		fmt.Fprint(stdout, caUsage)
		if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
			return nil
		}
		return fmt.Errorf("unknown ca task %q (want init or issue-intermediate)", args[0])
	}
	task := args[0]
	// --root-key and --name are the task's own; the rest are kanald's.
	var rootKey, name string
	var rest []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		var val *string
		switch {
		case a == "--root-key" || a == "-root-key":
			val = &rootKey
		case a == "--name" || a == "-name":
			val = &name
		}
		if val != nil {
			if i+1 >= len(args) {
				return fmt.Errorf("%s needs a value", a)
			}
			*val = args[i+1]
			i++
			continue
		}
		rest = append(rest, a)
	}
	cfg, err := parseConfig(rest, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if rootKey == "" {
		return errors.New("--root-key FILE is required")
	}
	if name == "" {
		name = "kanal"
	}
	dir := cfg.caDir()
	now := time.Now()
	switch task {
	case "init":
		if abs, _ := filepath.Abs(rootKey); filepath.Dir(abs) == mustAbs(dir) {
			return fmt.Errorf("--root-key %s is inside KANAL_CA_DIR, which every node holds; write it elsewhere", rootKey)
		}
		c, err := ca.InitOffline(dir, rootKey, name, now)
		if err != nil {
			return &settingError{"KANAL_CA_DIR", err}
		}
		fmt.Fprintf(stdout, "root written to %s/%s (key in %s: move it offline)\nintermediate %q in %s/%s\nroot sha256 %s\n",
			dir, ca.RootCertFile, rootKey, c.Certificate().Subject.CommonName, dir, ca.IssuingCertFile, caFingerprint(c))
	case "issue-intermediate":
		key, err := os.ReadFile(rootKey)
		if err != nil {
			return err
		}
		c, err := ca.RotateIntermediate(dir, key, name, now)
		if err != nil {
			return &settingError{"KANAL_CA_DIR", err}
		}
		fmt.Fprintf(stdout, "intermediate %q (serial %s) in %s/%s; %d retired in %s; restart the nodes\n",
			c.Certificate().Subject.CommonName, c.Certificate().SerialNumber, dir, ca.IssuingCertFile, len(c.Intermediates())-1, ca.RetiredFile)
	}
	return nil
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
