package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/translog/witness"
	"github.com/kanal-server/kanal/keys/transparency"
)

// exitStatus is an error that asks for a particular exit status.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) Unwrap() error { return e.err }

// ExitSplitView is kanal witness run's exit status after a split view.
const ExitSplitView = 3

type witnessOpts struct {
	name     string
	logKey   string
	interval time.Duration
	once     bool
}

func witnessCommands() []*command {
	wo := &witnessOpts{}
	return []*command{
		{name: "witness init", args: "--name NAME [--log-key KEY] [--server URL] DIR", nargs: 1,
			summary: "create a witness of a deployment's transparency log in DIR",
			help: `Creates DIR with a new witness key (witness.key, mode 0600, a
cosignature/v1 Ed25519 key named NAME, e.g. witness.example.org/kanal) and
a state file that pins the log's key. Prints the witness's verifier key:
give it to the deployment (KANAL_LOG_WITNESSES) and publish it, so that
clients can require your cosignature.

--log-key is the log's verifier key as the deployment publishes it
(GET /v1/log/key). Without it, the key the server answers now is pinned
and printed: check it against one obtained another way.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&wo.name, "name", "", "the witness's `NAME`, a schema-less URL such as witness.example.org/kanal")
				fs.StringVar(&wo.logKey, "log-key", "", "the log's verifier `KEY` (name+hash+base64)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				if wo.name == "" {
					return &usageError{cmd: "witness init", msg: "--name is required"}
				}
				server := c.serverURL(o, nil)
				logKey := wo.logKey
				if logKey == "" {
					k, err := fetchLogKey(ctx, server)
					if err != nil {
						return err
					}
					logKey = k
					fmt.Fprintf(c.stderr, "pinned the log key the server gave: %s\n", logKey)
				}
				vkey, err := witness.Init(args[0], wo.name, server, logKey, rand.Reader)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, vkey)
				return nil
			}},
		{name: "witness run", args: "[--interval D] [--once] DIR", nargs: 1,
			summary: "poll, check and cosign the log's checkpoints until stopped",
			help: `Polls the log's newest checkpoint every --interval (default 30s). Each
one is checked against the last checkpoint this witness cosigned — the
same root for the same size, a valid consistency proof for a larger one —
then cosigned (C2SP tlog-cosignature) and sent to the server.

If the server shows two checkpoints that cannot both be true (two roots
for one size, or a tree that does not extend the cosigned one), the
witness refuses to cosign, writes DIR/evidence-<time>.json with both
signed checkpoints and the proof, and exits with status 3. It will not
cosign for that log again: publish the evidence.

Network errors and refusals by the server are reported and retried at the
next poll. --once polls a single time.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.DurationVar(&wo.interval, "interval", 30*time.Second, "time between polls")
				fs.BoolVar(&wo.once, "once", false, "poll once and exit")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				if wo.interval < time.Second {
					return &usageError{cmd: "witness run", msg: "--interval must be at least 1s"}
				}
				w, err := witness.Open(args[0], witness.Options{})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "witness %s watching %s\n", strings.SplitN(w.Verifier(), "+", 2)[0], w.State().Server)
				t := time.NewTicker(wo.interval)
				defer t.Stop()
				for {
					r, err := w.Poll(ctx)
					var split *witness.SplitViewError
					switch {
					case errors.As(err, &split):
						return &exitStatus{code: ExitSplitView, err: err}
					case err != nil && wo.once:
						return err
					case err != nil:
						fmt.Fprintf(c.stderr, "%s poll failed: %v\n", c.now().UTC().Format(time.RFC3339), err)
					case r.Cosigned:
						fmt.Fprintf(c.stdout, "%s cosigned size %d\n", c.now().UTC().Format(time.RFC3339), r.Size)
					default:
						fmt.Fprintf(c.stdout, "%s %s\n", c.now().UTC().Format(time.RFC3339), r.Note)
					}
					if wo.once {
						return nil
					}
					select {
					case <-ctx.Done():
						return nil
					case <-t.C:
					}
				}
			}},
	}
}

// fetchLogKey asks the server for its log's verifier key.
func fetchLogKey(ctx context.Context, server string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/v1/log/key", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/log/key: %s", resp.Status)
	}
	key := strings.TrimSpace(string(b))
	if _, err := transparency.NewVerifier(key); err != nil {
		return "", err
	}
	return key, nil
}
