package translog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

type witnessed struct {
	l       *translog.Log
	signer  note.Signer
	logV    note.Verifier
	cs      []*transparency.Cosigner
	vkeys   []string
	srv     *httptest.Server
	d       *db.DB
	now     time.Time
	witness *transparency.WitnessPolicy
}

func newWitnessed(t *testing.T, d *db.DB, n, quorum int) *witnessed {
	t.Helper()
	w := &witnessed{d: d, now: time.Now()}
	for i := range n {
		skey, vkey, err := transparency.GenerateCosignerKey(rand.Reader, "witness.example/"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := transparency.NewCosigner(skey)
		w.cs, w.vkeys = append(w.cs, c), append(w.vkeys, vkey)
	}
	signer, vkey, err := translog.LoadOrCreateKey(filepath.Join(t.TempDir(), "log.key"), origin, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w.signer = signer
	w.logV, _ = transparency.NewVerifier(vkey)
	w.l, err = translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: vkey, Witnesses: w.vkeys, WitnessQuorum: quorum})
	if err != nil {
		t.Fatal(err)
	}
	w.witness, _ = transparency.NewWitnessPolicy(w.vkeys, quorum, time.Hour)
	mux := http.NewServeMux()
	w.l.Register(mux)
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	return w
}

func body(msg []byte) []byte { return msg[:bytes.Index(msg, []byte("\n\n"))+1] }

func (w *witnessed) cosign(t *testing.T, msg []byte, at time.Time, cs ...*transparency.Cosigner) []byte {
	t.Helper()
	for _, c := range cs {
		line, err := c.Cosign(body(msg), at)
		if err != nil {
			t.Fatal(err)
		}
		msg = transparency.AddSignatures(msg, line)
	}
	return msg
}

func (w *witnessed) post(t *testing.T, raw string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Post(w.srv.URL+"/v1/log/cosignatures", "application/json", strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func (w *witnessed) submit(t *testing.T, msg []byte) (int, string, []byte) {
	t.Helper()
	raw, _ := json.Marshal(translog.CosignatureRequest{Checkpoint: string(msg)})
	return w.post(t, string(raw))
}

func (w *witnessed) stored(t *testing.T) int {
	t.Helper()
	var n int
	if err := w.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM translog_cosignatures`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAttackCosignatureRefused: a cosignature that does not verify, comes
// from no configured witness, is dated in the future, or covers a
// checkpoint this log did not sign is refused with problem+json, and
// nothing is stored — not even the valid cosignatures sent with it.
func TestAttackCosignatureRefused(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		w := newWitnessed(t, d, 2, 2)
		appendN(t, d, w.l, 0, 10, 3)
		_, msg := get(t, w.srv.URL+"/v1/log/checkpoint")
		strangerKey, _, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/z")
		stranger, _ := transparency.NewCosigner(strangerKey)
		impostorKey, _, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/b") // b's name, another key
		impostor, _ := transparency.NewCosigner(impostorKey)
		forgedLine := func() string {
			// b's name and key ID, a signature by another key.
			good, _ := w.cs[1].Cosign(body(msg), w.now)
			bad, _ := impostor.Cosign(body(msg), w.now)
			return good[:strings.LastIndex(good, " ")+1] + goodPrefixBadSig(t, good, bad)
		}
		c, _, _ := transparency.Open(msg, w.logV)
		c.Hash[0] ^= 1
		otherRoot, _ := transparency.Sign(c, w.signer) // the log key, another root at the same size
		c.Size = 1000
		beyond, _ := transparency.Sign(c, w.signer)
		cases := []struct {
			name string
			raw  string
			msg  []byte
			code int
			typ  string
		}{
			{"not JSON", "{", nil, 400, ""},
			{"no cosignature", "", msg, 422, "cosignature-invalid"},
			{"a stranger's", "", w.cosign(t, msg, w.now, stranger), 422, "cosignature-invalid"},
			{"another key under a witness's name", "", w.cosign(t, msg, w.now, impostor), 422, "cosignature-invalid"},
			{"a valid one and a forged one", "", transparency.AddSignatures(w.cosign(t, msg, w.now, w.cs[0]), forgedLine()), 422, "cosignature-invalid"},
			{"dated an hour ahead", "", w.cosign(t, msg, w.now.Add(time.Hour), w.cs[0]), 422, "cosignature-invalid"},
			{"the same witness twice", "", w.cosign(t, w.cosign(t, msg, w.now, w.cs[0]), w.now.Add(-time.Second), w.cs[0]), 422, "cosignature-invalid"},
			{"another root at the same size", "", w.cosign(t, otherRoot, w.now, w.cs[0]), 409, "checkpoint-unknown"},
			{"a size the log never signed", "", w.cosign(t, beyond, w.now, w.cs[0]), 404, "checkpoint-unknown"},
			{"another log's checkpoint", "", w.cosign(t, []byte(strings.Replace(string(msg), origin, "kanal/other", 1)), w.now, w.cs[0]), 422, "checkpoint-unknown"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				raw := tc.raw
				if tc.msg != nil {
					b, _ := json.Marshal(translog.CosignatureRequest{Checkpoint: string(tc.msg)})
					raw = string(b)
				}
				code, ct, b := w.post(t, raw)
				if code != tc.code || ct != "application/problem+json" || !strings.Contains(string(b), tc.typ) {
					t.Fatalf("= %d %s %s; want %d problem+json %s", code, ct, b, tc.code, tc.typ)
				}
				if n := w.stored(t); n != 0 {
					t.Fatalf("%d cosignatures stored", n)
				}
			})
		}
		if code, b := get(t, w.srv.URL+"/v1/log/witness/checkpoint"); code != 404 || !strings.Contains(string(b), "not-cosigned") {
			t.Fatalf("witness checkpoint without cosignatures = %d %s", code, b)
		}
		// One witness of a quorum of two: stored, still not served.
		if code, _, b := w.submit(t, w.cosign(t, msg, w.now, w.cs[0])); code != 200 {
			t.Fatalf("a valid cosignature = %d %s", code, b)
		}
		if code, _ := get(t, w.srv.URL+"/v1/log/witness/checkpoint"); code != 404 {
			t.Fatalf("served with 1 of 2 cosignatures: %d", code)
		}
		if code, _, b := w.submit(t, w.cosign(t, msg, w.now, w.cs[1])); code != 200 {
			t.Fatalf("a valid cosignature = %d %s", code, b)
		}
		code, got := get(t, w.srv.URL+"/v1/log/witness/checkpoint")
		if code != 200 {
			t.Fatalf("witness checkpoint = %d %s", code, got)
		}
		cp, cos, err := w.witness.Check(got, w.logV, w.now)
		if err != nil || len(cos) != 2 || cp != mustOpen(t, msg, w.logV) {
			t.Fatalf("served checkpoint: %v, %d cosignatures, %v", cp, len(cos), err)
		}
		// A newer checkpoint with fewer cosignatures does not replace it.
		appendN(t, d, w.l, 10, 1, 1)
		_, newer := get(t, w.srv.URL+"/v1/log/checkpoint")
		w.submit(t, w.cosign(t, newer, w.now, w.cs[0]))
		if _, again := get(t, w.srv.URL+"/v1/log/witness/checkpoint"); !bytes.Equal(again, got) {
			t.Fatalf("served\n%s\nwant the older checkpoint with the quorum", again)
		}
		var list translog.WitnessList
		getJSON(t, w.srv.URL+"/v1/log/witnesses", &list)
		if list.Quorum != 2 || len(list.Witnesses) != 2 || list.Witnesses[0] != w.vkeys[0] {
			t.Fatalf("witness list %+v", list)
		}
	})
}

func mustOpen(t *testing.T, msg []byte, v note.Verifier) transparency.Checkpoint {
	t.Helper()
	c, _, err := transparency.Open(msg, v)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// goodPrefixBadSig returns the base64 of good's key ID and timestamp with
// bad's signature bytes.
func goodPrefixBadSig(t *testing.T, good, bad string) string {
	t.Helper()
	g, _ := transparency.ParseSignatureLine(good)
	b, _ := transparency.ParseSignatureLine(bad)
	gr, _ := b64.DecodeString(g.Base64)
	br, _ := b64.DecodeString(b.Base64)
	return b64.EncodeToString(append(gr[:12:12], br[12:]...))
}

var b64 = base64.StdEncoding
