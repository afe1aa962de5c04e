// Package witness is a transparency log witness (C2SP tlog-cosignature):
// a process that anyone — a neighbouring municipality, a civic-tech group
// — can run against a kanal deployment. It polls the log's newest
// checkpoint, checks that it is consistent with the last one it cosigned,
// cosigns it and sends the cosignature back. A server that shows it two
// different trees (two checkpoints of one size with different roots, or a
// newer checkpoint that is not an extension of the old one) gets no
// cosignature, ever again: the witness writes an evidence file and stops.
//
// A witness keeps everything in one directory: witness.key (its
// cosignature/v1 signer key, mode 0600), state.json (the log it watches
// and the last checkpoint it cosigned, mode 0600) and, after a split view,
// evidence-<unix time>.json.
package witness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/keys/transparency"
)

// File names inside a witness directory.
const (
	KeyFile   = "witness.key"
	StateFile = "state.json"
)

// State is what a witness remembers between polls (state.json).
type State struct {
	Server string `json:"server"`  // base URL of the kanald the witness polls
	LogKey string `json:"log_key"` // the log's verifier key (note), pinned at init
	// Checkpoint is the last checkpoint the witness cosigned, as the log
	// signed it (no cosignatures); empty before the first.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Halted names the evidence file of a split view: the witness cosigns
	// nothing for this log any more.
	Halted string `json:"halted,omitempty"`
}

// Evidence is the content of an evidence file: two signed checkpoints of
// the log that cannot both be true, and the proof that shows it.
type Evidence struct {
	Reason     string    `json:"reason"`
	LogKey     string    `json:"log_key"`
	Server     string    `json:"server"`
	ObservedAt time.Time `json:"observed_at"`
	Cosigned   string    `json:"cosigned_checkpoint"` // what the witness had cosigned
	Offered    string    `json:"offered_checkpoint"`  // what the server showed now
	Proof      []string  `json:"consistency_proof,omitempty"`
}

// SplitViewError is returned by Poll when the log showed the witness a
// checkpoint that contradicts one it cosigned.
type SplitViewError struct {
	Reason   string
	Evidence string // path of the evidence file
}

func (e *SplitViewError) Error() string {
	return "split view: " + e.Reason + "; evidence in " + e.Evidence + "; refusing to cosign"
}

// Init creates a witness directory: a new key named name and a state that
// pins the log key. It returns the witness's verifier key, which the
// deployment lists in KANAL_LOG_WITNESSES and clients in their witness
// lists. An existing witness key is never overwritten.
func Init(dir, name, server, logKey string, rand io.Reader) (string, error) {
	if _, err := transparency.NewVerifier(logKey); err != nil {
		return "", err
	}
	if err := checkServer(server); err != nil {
		return "", err
	}
	skey, vkey, err := transparency.GenerateCosignerKey(rand, name)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(filepath.Join(dir, KeyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("%s already holds a witness key; a witness keeps its key", dir)
	}
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := writeState(dir, &State{Server: strings.TrimRight(server, "/"), LogKey: logKey}); err != nil {
		return "", err
	}
	return vkey, nil
}

func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("witness: server %q is not an http(s) URL", s)
	}
	return nil
}

// Witness is an opened witness directory.
type Witness struct {
	dir      string
	cosigner *transparency.Cosigner
	logV     note.Verifier
	state    State
	client   *http.Client
	now      func() time.Time
}

// Options of Open. Zero values take defaults.
type Options struct {
	Client *http.Client     // nil: a client with a 30 s timeout
	Now    func() time.Time // nil: time.Now
}

// Open loads a witness directory made by Init.
func Open(dir string, o Options) (*Witness, error) {
	raw, err := readPrivate(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	c, err := transparency.NewCosigner(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, err
	}
	w := &Witness{dir: dir, cosigner: c, client: o.Client, now: o.Now}
	if w.client == nil {
		w.client = &http.Client{Timeout: 30 * time.Second}
	}
	if w.now == nil {
		w.now = time.Now
	}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &w.state); err != nil {
		return nil, fmt.Errorf("witness: %s: %w", StateFile, err)
	}
	if w.logV, err = transparency.NewVerifier(w.state.LogKey); err != nil {
		return nil, err
	}
	return w, nil
}

func readPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("witness: %s has mode %04o; only the witness's user may read its key (chmod 600)", path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

// Verifier is the witness's verifier key.
func (w *Witness) Verifier() string { return w.cosigner.Verifier() }

// State returns a copy of the witness's state.
func (w *Witness) State() State { return w.state }

// Result says what one poll did.
type Result struct {
	Size     int64 // the size of the checkpoint the server showed
	Cosigned bool  // whether the witness cosigned (and submitted) it
	Note     string
}

// Poll fetches the log's newest checkpoint, checks it against the last one
// the witness cosigned, cosigns it and submits the cosignature. A split
// view is a *SplitViewError, after which every later Poll returns it too.
func (w *Witness) Poll(ctx context.Context) (Result, error) {
	if w.state.Halted != "" {
		return Result{}, &SplitViewError{Reason: "halted after an earlier split view", Evidence: w.state.Halted}
	}
	msg, err := w.get(ctx, "/v1/log/checkpoint")
	if err != nil {
		return Result{}, err
	}
	if msg == nil {
		return Result{Note: "the log is empty"}, nil
	}
	c, _, err := transparency.Open(msg, w.logV)
	if err != nil {
		return Result{}, fmt.Errorf("witness: the server's checkpoint: %w", err)
	}
	// Only the log's own signature is kept and cosigned over.
	msg = logSigned(msg)
	res := Result{Size: c.Size}
	if w.state.Checkpoint != "" {
		old, _, err := transparency.Open([]byte(w.state.Checkpoint), w.logV)
		if err != nil {
			return res, fmt.Errorf("witness: stored checkpoint: %w", err)
		}
		switch {
		case c.Size == old.Size && c.Hash != old.Hash:
			return res, w.halt("two checkpoints of size "+strconv.FormatInt(c.Size, 10)+" with different root hashes", msg, nil)
		case c.Size == old.Size:
			// Same tree: cosigned again, with a fresh time.
		case c.Size > old.Size:
			proof, strs, err := w.consistency(ctx, old.Size, c.Size)
			if err != nil {
				return res, err
			}
			if err := transparency.VerifyConsistency(old, c, proof); err != nil {
				return res, w.halt(fmt.Sprintf("checkpoint of size %d is not consistent with the cosigned one of size %d", c.Size, old.Size), msg, strs)
			}
		default:
			// The server went back to a smaller tree. It may show it only
			// if it is a prefix of the cosigned one; the witness does not
			// cosign it (it has seen a larger one).
			proof, strs, err := w.consistency(ctx, c.Size, old.Size)
			if err != nil {
				return res, err
			}
			if err := transparency.VerifyConsistency(c, old, proof); err != nil {
				return res, w.halt(fmt.Sprintf("checkpoint of size %d is not a prefix of the cosigned one of size %d", c.Size, old.Size), msg, strs)
			}
			res.Note = fmt.Sprintf("the server showed an older tree (size %d, cosigned %d); not cosigned", c.Size, old.Size)
			return res, nil
		}
	}
	// Remember before telling anyone: a witness that crashed after
	// cosigning must still hold the tree it vouched for.
	w.state.Checkpoint = string(msg)
	if err := writeState(w.dir, &w.state); err != nil {
		return res, err
	}
	line, err := w.cosigner.Cosign(body(msg), w.now())
	if err != nil {
		return res, err
	}
	if err := w.submit(ctx, transparency.AddSignatures(msg, line)); err != nil {
		return res, err
	}
	res.Cosigned = true
	return res, nil
}

// halt writes the evidence file, marks the state halted and returns the
// split-view error.
func (w *Witness) halt(reason string, offered []byte, proof []string) error {
	now := w.now().UTC()
	ev := Evidence{Reason: reason, LogKey: w.state.LogKey, Server: w.state.Server, ObservedAt: now,
		Cosigned: w.state.Checkpoint, Offered: string(offered), Proof: proof}
	b, _ := json.MarshalIndent(ev, "", "  ")
	path := filepath.Join(w.dir, fmt.Sprintf("evidence-%d.json", now.UnixNano()))
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("witness: split view (%s), and the evidence could not be written: %w", reason, err)
	}
	w.state.Halted = path
	if err := writeState(w.dir, &w.state); err != nil {
		return err
	}
	return &SplitViewError{Reason: reason, Evidence: path}
}

func body(msg []byte) []byte {
	i := bytes.Index(msg, []byte("\n\n"))
	return msg[:i+1]
}

// logSigned drops every signature line but the first (the log's; Open has
// verified it is there).
func logSigned(msg []byte) []byte {
	i := bytes.Index(msg, []byte("\n\n"))
	rest := msg[i+2:]
	j := bytes.IndexByte(rest, '\n')
	return bytes.Clone(msg[:i+2+j+1])
}

// get fetches path from the server; a 404 is (nil, nil).
func (w *Witness) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.state.Server+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, transparency.MaxCheckpointBytes+64<<10))
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if resp.StatusCode == http.StatusNotFound && path == "/v1/log/checkpoint" {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("witness: GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func (w *Witness) consistency(ctx context.Context, old, new int64) ([]tlog.Hash, []string, error) {
	b, err := w.get(ctx, fmt.Sprintf("/v1/log/proof/consistency?old=%d&new=%d", old, new))
	if err != nil {
		return nil, nil, err
	}
	var p transparency.ConsistencyProof
	if err := json.Unmarshal(b, &p); err != nil || p.Old != old || p.New != new {
		return nil, nil, fmt.Errorf("witness: the server's consistency proof %d→%d is malformed", old, new)
	}
	hs, err := transparency.DecodeHashes(p.Hashes)
	if err != nil {
		return nil, nil, fmt.Errorf("witness: the server's consistency proof: %w", err)
	}
	return hs, p.Hashes, nil
}

func (w *Witness) submit(ctx context.Context, cosigned []byte) error {
	raw, _ := json.Marshal(translog.CosignatureRequest{Checkpoint: string(cosigned)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.state.Server+"/v1/log/cosignatures", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("witness: submit: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("witness: the server refused the cosignature: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// writeState replaces state.json atomically (mode 0600).
func writeState(dir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+StateFile+".tmp-*")
	if err != nil {
		return err
	}
	name := f.Name()
	defer os.Remove(name)
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(name, filepath.Join(dir, StateFile))
}
