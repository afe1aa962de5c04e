package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// TestIndependentVerificationOfClaims: what a real kanald attaches to a
// bundle claim — the identity-key entry, the signed checkpoint and the
// inclusion proof — and the checkpoints and proofs of its /v1/log routes
// are checked with golang.org/x/mod's sumdb note and tlog packages alone,
// as an outside implementation of docs/transparency.md would: not through
// keys/transparency or the SDK. The entry names Bob's account (by its
// commitment under the attached salt), device,
// certificate fingerprint and identity key; the leaf hash is SHA-256 of
// 0x00 and the entry; a later checkpoint is consistent with the first;
// the hash tiles give the same tree.
func TestIndependentVerificationOfClaims(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		ctx := context.Background()
		srv := startKanald(t, postgres)
		alice := signUp(t, srv, "alice@example.org", false)
		bob := signUp(t, srv, "bob@example.org", true)
		bobSDK := bob.SDK(t, srv.URL, client.NewMemoryStore())
		if _, err := bobSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}

		// The claim, over plain HTTP.
		body, _ := json.Marshal(messaging.ClaimRequest{AccountID: bob.AccountID})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/prekeys/claim", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var claim messaging.ClaimResponse
		err = json.NewDecoder(resp.Body).Decode(&claim)
		resp.Body.Close()
		if err != nil || len(claim.Bundles) != 1 || claim.Bundles[0].Log == nil {
			t.Fatalf("claim: %v %+v", err, claim)
		}
		b := claim.Bundles[0]
		a := b.Log

		vkey := strings.TrimSpace(string(httpGet(t, srv.URL+"/v1/log/key")))
		v, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open([]byte(a.Checkpoint), note.VerifierList(v))
		if err != nil {
			t.Fatalf("the attached checkpoint does not open with note: %v", err)
		}
		origin, tree := checkpointText(t, n.Text)
		if origin != v.Name() || a.Index >= tree.N {
			t.Fatalf("checkpoint %q, key %s, index %d", n.Text, v.Name(), a.Index)
		}

		// The leaf hash, computed by hand, is tlog's record hash.
		leaf := sha256.Sum256(append([]byte{0}, a.Entry...))
		if tlog.Hash(leaf) != tlog.RecordHash(a.Entry) {
			t.Fatal("leaf hash is not SHA-256(0x00 || entry)")
		}
		if err := tlog.CheckRecord(hashes(t, a.Proof), tree.N, tree.Hash, a.Index, leaf); err != nil {
			t.Fatalf("inclusion proof: %v", err)
		}

		// The entry says what docs/transparency.md says it says.
		blk, _ := pem.Decode([]byte(b.Certificate))
		fp := sha256.Sum256(blk.Bytes)
		idKey, _ := b.Bundle.Identity.MarshalBinary()
		lines := strings.Split(string(a.Entry), "\n")
		// Bob's account is named by SHA-256("kanal-account/v1" || salt ||
		// account id), with the 32-byte salt the attachment carries.
		if len(a.Salt) != 32 {
			t.Fatalf("the attachment carries a salt of %d bytes", len(a.Salt))
		}
		commitment := sha256.Sum256(append(append([]byte("kanal-account/v1"), a.Salt...), bob.AccountID...))
		want := []string{"kanal-log v2", "kind identity-key", "commitment " + hex.EncodeToString(commitment[:]), "device " + bob.DeviceID,
			"cert sha256:" + hex.EncodeToString(fp[:]), "key " + base64.StdEncoding.EncodeToString(idKey)}
		if len(lines) != 8 || lines[7] != "" || !strings.HasPrefix(lines[6], "time ") {
			t.Fatalf("entry %q", a.Entry)
		}
		for i, w := range want {
			if lines[i] != w {
				t.Fatalf("entry line %d is %q, want %q", i+1, lines[i], w)
			}
		}

		// The log grows (Carol joins); the newer checkpoint is consistent
		// with the attached one, and the tiles prove its tree.
		signUp(t, srv, "carol@example.org", false)
		cur, err := note.Open(httpGet(t, srv.URL+"/v1/log/checkpoint"), note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		_, curTree := checkpointText(t, cur.Text)
		if curTree.N <= tree.N {
			t.Fatalf("the log did not grow: %d, %d", tree.N, curTree.N)
		}
		var cp struct {
			Old, New int64
			Hashes   []string
		}
		if err := json.Unmarshal(httpGet(t, fmt.Sprintf("%s/v1/log/proof/consistency?old=%d&new=%d", srv.URL, tree.N, curTree.N)), &cp); err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(hashes(t, cp.Hashes), curTree.N, curTree.Hash, tree.N, tree.Hash); err != nil {
			t.Fatalf("consistency proof: %v", err)
		}
		thr := tlog.TileHashReader(curTree, httpTiles{t, srv.URL})
		if h, err := tlog.TreeHash(curTree.N, thr); err != nil || h != curTree.Hash {
			t.Fatalf("tree hash from tiles: %x, %v", h, err)
		}
		p, err := tlog.ProveRecord(curTree.N, a.Index, thr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, curTree.N, curTree.Hash, a.Index, leaf); err != nil {
			t.Fatalf("inclusion proof from tiles: %v", err)
		}
	})
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return b
}

// checkpointText parses a checkpoint body (C2SP tlog-checkpoint: origin,
// decimal size, base64 root hash) by hand.
func checkpointText(t *testing.T, text string) (string, tlog.Tree) {
	t.Helper()
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("checkpoint body %q", text)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != 32 {
		t.Fatalf("root hash %q", lines[2])
	}
	var tree tlog.Tree
	tree.N = n
	copy(tree.Hash[:], h)
	return lines[0], tree
}

func hashes(t *testing.T, ss []string) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("hash %q", s)
		}
		copy(out[i][:], b)
	}
	return out
}

// httpTiles reads hash tiles from /v1/log/tile/, as a sumdb client does.
type httpTiles struct {
	t   *testing.T
	url string
}

func (r httpTiles) Height() int { return 8 }
func (r httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		out[i] = httpGet(r.t, r.url+"/v1/log/"+tile.Path())
	}
	return out, nil
}
func (r httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}
