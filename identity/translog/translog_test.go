package translog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

const origin = "kanal/test"

func newLog(t testing.TB, d *db.DB) (*translog.Log, string) {
	t.Helper()
	signer, vkey, err := translog.LoadOrCreateKey(filepath.Join(t.TempDir(), "log.key"), origin, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: vkey})
	if err != nil {
		t.Fatal(err)
	}
	return l, vkey
}

func entry(i int) transparency.Entry {
	return transparency.Entry{Kind: transparency.KindDevice, Account: "acc_" + strconv.Itoa(i%7), Device: "dev_" + strconv.Itoa(i),
		Cert: transparency.CertFingerprint([]byte("cert " + strconv.Itoa(i))), Time: int64(1767225600 + i)}
}

func appendN(t testing.TB, d *db.DB, l *translog.Log, from, n, batch int) {
	t.Helper()
	for i := from; i < from+n; i += batch {
		var es []transparency.Entry
		for j := i; j < min(i+batch, from+n); j++ {
			es = append(es, entry(j))
		}
		err := d.Tx(context.Background(), func(tx *sql.Tx) error {
			_, err := l.Append(context.Background(), tx, es...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, b := get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func decodeHashes(t *testing.T, ss []string) []tlog.Hash {
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

// parseTree reads a checkpoint body with nothing of kanal's.
func parseTree(t *testing.T, text string) (string, tlog.Tree) {
	t.Helper()
	lines := strings.Split(text, "\n")
	if len(lines) != 4 {
		t.Fatalf("checkpoint %q", text)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	h, herr := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || herr != nil || len(h) != 32 {
		t.Fatalf("checkpoint %q", text)
	}
	var tr tlog.Tree
	tr.N = n
	copy(tr.Hash[:], h)
	return lines[0], tr
}

// TestIndependentVerification checks what the log's routes serve with
// golang.org/x/mod's sumdb packages alone, as an outside verifier would:
// the checkpoint's signature with note, entries' inclusion and the
// consistency between two checkpoints with tlog, and the hash tiles
// against the signed tree. Nothing of keys/transparency checks here.
func TestIndependentVerification(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		l, _ := newLog(t, d)
		mux := http.NewServeMux()
		l.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()

		appendN(t, d, l, 0, 300, 7)
		_, vkeyText := get(t, srv.URL+"/v1/log/key")
		v, err := note.NewVerifier(strings.TrimSpace(string(vkeyText)))
		if err != nil {
			t.Fatal(err)
		}
		_, old := get(t, srv.URL+"/v1/log/checkpoint")
		oldNote, err := note.Open(old, note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		o, oldTree := parseTree(t, oldNote.Text)
		if o != origin || oldTree.N != 300 {
			t.Fatalf("checkpoint %q", oldNote.Text)
		}
		appendN(t, d, l, 300, 213, 50)
		_, cur := get(t, srv.URL+"/v1/log/checkpoint")
		curNote, err := note.Open(cur, note.VerifierList(v))
		if err != nil {
			t.Fatal(err)
		}
		_, tree := parseTree(t, curNote.Text)
		if tree.N != 513 {
			t.Fatalf("size %d", tree.N)
		}
		var cp transparency.ConsistencyProof
		getJSON(t, fmt.Sprintf("%s/v1/log/proof/consistency?old=%d&new=%d", srv.URL, oldTree.N, tree.N), &cp)
		if err := tlog.CheckTree(decodeHashes(t, cp.Hashes), tree.N, tree.Hash, oldTree.N, oldTree.Hash); err != nil {
			t.Fatalf("consistency: %v", err)
		}
		var es transparency.Entries
		getJSON(t, srv.URL+"/v1/log/entries?start=290&count=20", &es)
		if len(es.Entries) != 20 {
			t.Fatalf("%d entries", len(es.Entries))
		}
		for _, e := range es.Entries {
			var ip transparency.InclusionProof
			getJSON(t, fmt.Sprintf("%s/v1/log/proof/inclusion?index=%d&size=%d", srv.URL, e.Index, tree.N), &ip)
			if err := tlog.CheckRecord(decodeHashes(t, ip.Hashes), tree.N, tree.Hash, e.Index, tlog.RecordHash(e.Data)); err != nil {
				t.Fatalf("entry %d: %v", e.Index, err)
			}
		}
		// The tiles, fetched the way a sumdb client fetches them, prove the
		// same tree hash.
		thr := tlog.TileHashReader(tree, tileReader{t, srv.URL})
		if h, err := tlog.TreeHash(tree.N, thr); err != nil || h != tree.Hash {
			t.Fatalf("tree hash from tiles: %x, %v", h, err)
		}
		// Each checkpoint signed so far is served by its size, still valid.
		_, at := get(t, srv.URL+"/v1/log/checkpoint?size=300")
		if string(at) != string(old) {
			t.Fatalf("checkpoint of size 300 changed:\n%s\n%s", at, old)
		}
	})
}

type tileReader struct {
	t   *testing.T
	url string
}

func (r tileReader) Height() int { return translog.TileHeight }
func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		code, b := get(r.t, r.url+"/v1/log/"+tile.Path())
		if code != 200 {
			return nil, fmt.Errorf("tile %s: %d %s", tile.Path(), code, b)
		}
		out[i] = b
	}
	return out, nil
}
func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

func TestRoutesRefuseBadParameters(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		l, _ := newLog(t, d)
		mux := http.NewServeMux()
		l.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		if code, _ := get(t, srv.URL+"/v1/log/checkpoint"); code != 404 {
			t.Fatalf("empty log checkpoint: %d", code)
		}
		appendN(t, d, l, 0, 10, 3)
		for path, want := range map[string]int{
			"/v1/log/proof/inclusion?index=1&size=11":         404,
			"/v1/log/proof/inclusion?index=10&size=10":        400,
			"/v1/log/proof/inclusion?index=-1&size=10":        400,
			"/v1/log/proof/inclusion?index=01&size=10":        400,
			"/v1/log/proof/inclusion?index=1":                 400,
			"/v1/log/proof/inclusion?index=1&index=2&size=10": 400,
			"/v1/log/proof/inclusion?index=1&size=10&x=1":     400,
			"/v1/log/proof/consistency?old=5&new=4":           400,
			"/v1/log/proof/consistency?old=5&new=11":          404,
			"/v1/log/entries?start=0&count=1001":              400,
			"/v1/log/entries?start=0&count=0":                 400,
			"/v1/log/entries?start=10&count=1":                404,
			"/v1/log/checkpoint?size=5":                       404, // no append ended at 5
			"/v1/log/checkpoint?size=x":                       400,
			"/v1/log/tile/8/0/001":                            404,
			"/v1/log/tile/8/data/000.p/10":                    404,
			"/v1/log/tile/4/0/000":                            400,
			"/v1/log/tile/8/0/000.p/11":                       404,
			"/v1/log/proof/inclusion?index=3&size=9":          200,
			"/v1/log/checkpoint?size=9":                       200,
			"/v1/log/tile/8/0/000.p/10":                       200,
		} {
			code, body := get(t, srv.URL+path)
			if code != want {
				t.Errorf("GET %s: %d, want %d (%s)", path, code, want, body)
			}
			if code >= 400 && !strings.Contains(string(body), `"type"`) {
				t.Errorf("GET %s: %d without problem+json: %s", path, code, body)
			}
		}
	})
}

// TestAppendConcurrent appends from many goroutines (on PostgreSQL through
// the advisory lock): every entry gets its own index and every signed
// checkpoint extends the ones before it.
func TestAppendConcurrent(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		l, _ := newLog(t, d)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				appendN(t, d, l, g*20, 20, 2)
			}()
		}
		wg.Wait()
		msg, c, err := l.Latest(context.Background())
		if err != nil || c.Size != 160 {
			t.Fatalf("latest %d, %v", c.Size, err)
		}
		_ = msg
		for m := int64(2); m < 160; m += 2 {
			old, err := l.CheckpointAt(context.Background(), m)
			if err != nil {
				t.Fatalf("checkpoint %d: %v", m, err)
			}
			oc, _, err := transparency.Open(old, l.Verifier())
			if err != nil {
				t.Fatal(err)
			}
			p, err := l.ConsistencyProof(context.Background(), m, 160)
			if err != nil {
				t.Fatal(err)
			}
			if err := transparency.VerifyConsistency(oc, c, p); err != nil {
				t.Fatalf("%d -> 160: %v", m, err)
			}
		}
	})
}

// TestAttackRewriteRefused: whoever holds a database connection cannot
// rewrite or delete an entry or a stored hash; the tables refuse it.
func TestAttackRewriteRefused(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		l, _ := newLog(t, d)
		appendN(t, d, l, 0, 3, 3)
		for _, q := range []string{
			`UPDATE translog_entries SET data = $1 WHERE idx = 0`,
			`DELETE FROM translog_entries WHERE idx = 2 AND data <> $1`,
			`UPDATE translog_hashes SET hash = $1 WHERE idx = 0`,
			`DELETE FROM translog_hashes WHERE hash <> $1`,
		} {
			if _, err := d.Exec(context.Background(), q, []byte("x")); err == nil {
				t.Errorf("%s: allowed", q)
			}
		}
		es, err := l.Entries(context.Background(), 0, 3)
		if err != nil || len(es) != 3 {
			t.Fatalf("entries after the attack: %d, %v", len(es), err)
		}
	})
}

func TestLogKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log.key")
	s1, v1, err := translog.LoadOrCreateKey(path, origin, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("log.key mode %v, %v", st.Mode().Perm(), err)
	}
	// A second node reads the same key.
	s2, v2, err := translog.LoadOrCreateKey(path, origin, rand.Reader)
	if err != nil || v1 != v2 || s1.KeyHash() != s2.KeyHash() {
		t.Fatalf("second load: %v %q %q", err, v1, v2)
	}
	if !strings.HasPrefix(v1, origin+"+") {
		t.Fatalf("verifier key %q is not named by the origin", v1)
	}
	// Another origin is refused, and so is a key others can read.
	if _, _, err := translog.LoadOrCreateKey(path, "kanal/other", rand.Reader); err == nil {
		t.Fatal("a key named for another origin loaded")
	}
	os.Chmod(path, 0o644)
	if _, _, err := translog.LoadOrCreateKey(path, origin, rand.Reader); err == nil {
		t.Fatal("a world-readable key loaded")
	}
}

// TestAttackOtherKeyRefused: a node started with a key other than the one
// that signed the stored checkpoints does not start.
func TestAttackOtherKeyRefused(t *testing.T) {
	d := dbtest.SQLite(t, translog.Migrations())
	l, _ := newLog(t, d)
	appendN(t, d, l, 0, 1, 1)
	signer, vkey, err := translog.LoadOrCreateKey(filepath.Join(t.TempDir(), "log.key"), origin, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = translog.New(context.Background(), translog.Options{DB: d, Signer: signer, Verifier: vkey})
	if err == nil || !errors.Is(err, transparency.ErrSignature) {
		t.Fatalf("New with another key: %v", err)
	}
}

// TestLookup: GET /v1/log/lookup finds the entry of a device certificate
// and proves it against the newest checkpoint; what is not in the log is a
// 404 problem, bad parameters a 400.
func TestLookup(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		l, vkey := newLog(t, d)
		mux := http.NewServeMux()
		l.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		appendN(t, d, l, 0, 20, 6)
		e := entry(7)
		var a transparency.Attachment
		getJSON(t, srv.URL+"/v1/log/lookup?kind=device&device=dev_7&cert="+e.Cert.String(), &a)
		v, _ := transparency.NewVerifier(vkey)
		cp, _, err := transparency.Open([]byte(a.Checkpoint), v)
		if err != nil || cp.Size != 20 || a.Index != 7 {
			t.Fatalf("checkpoint %+v %v, index %d", cp, err, a.Index)
		}
		// The log holds the version 2 entry: the account as its
		// commitment under the salt the attachment carries.
		salt, ok := transparency.SaltOf(a.Salt)
		if !ok {
			t.Fatalf("the attachment carries a salt of %d bytes", len(a.Salt))
		}
		e.Version, e.Commitment, e.Account = transparency.V2, transparency.AccountCommitment(salt, e.Account), ""
		want, _ := e.Marshal()
		if err := transparency.VerifyInclusion(cp, a.Index, want, decodeHashes(t, a.Proof)); err != nil || string(a.Entry) != string(want) {
			t.Fatalf("entry %q: %v", a.Entry, err)
		}
		other := entry(8).Cert.String()
		for path, code := range map[string]int{
			"kind=device&device=dev_7&cert=" + other:                        404,
			"kind=identity-key&device=dev_7&cert=" + e.Cert.String():        404,
			"kind=device&device=dev_7&cert=" + strings.ToUpper(other):       400,
			"kind=device&device=dev_7&cert=sha256:00":                       400,
			"kind=survey-head&device=dev_7&cert=" + other:                   400,
			"kind=membership&device=dev_7&cert=" + other:                    400,
			"kind=device&device=dev_7&org=o&cert=" + other:                  400,
			"kind=device&device=dev_7&cert=" + other + "&cert=" + other:     400,
			"kind=device&cert=" + other:                                     400,
			"kind=membership&org=o&device=dev_7&cert=" + e.Cert.String():    404,
			"kind=device&device=dev_7&cert=" + e.Cert.String() + "&extra=1": 400,
		} {
			got, body := get(t, srv.URL+"/v1/log/lookup?"+path)
			if got != code || !strings.Contains(string(body), `"type"`) {
				t.Errorf("lookup %s: %d %s, want %d with a problem", path, got, body, code)
			}
		}
	})
}

// TestLogHead: a survey board head is logged once, however many times
// and from however many goroutines it is served, and proved each time; a
// new head gets its own entry.
func TestLogHead(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		l, vkey := newLog(t, d)
		appendN(t, d, l, 0, 5, 5)
		head := make([]byte, 32)
		head[0] = 1
		var wg sync.WaitGroup
		idx := make([]int64, 8)
		errs := make([]error, 8)
		for i := range idx {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := l.LogHead(ctx, "srv_1", 42, head)
				if err == nil {
					idx[i] = a.Index
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i := range idx {
			if errs[i] != nil || idx[i] != idx[0] {
				t.Fatalf("LogHead %d: index %d (first %d), %v", i, idx[i], idx[0], errs[i])
			}
		}
		if n, _ := l.Size(ctx); n != 6 {
			t.Fatalf("log size %d after logging one head, want 6", n)
		}
		a, err := l.LogHead(ctx, "srv_1", 42, head)
		if err != nil || a.Index != 5 {
			t.Fatalf("again: %+v %v", a, err)
		}
		v, _ := transparency.NewVerifier(vkey)
		cp, _, err := transparency.Open([]byte(a.Checkpoint), v)
		if err != nil {
			t.Fatal(err)
		}
		if err := transparency.VerifyInclusion(cp, a.Index, a.Entry, decodeHashes(t, a.Proof)); err != nil {
			t.Fatal(err)
		}
		e, err := transparency.ParseEntry(a.Entry)
		if err != nil || e.Kind != transparency.KindSurveyHead || e.Survey != "srv_1" || e.Size != 42 || !bytes.Equal(e.Head, head) {
			t.Fatalf("entry %+v %v", e, err)
		}
		head2 := bytes.Clone(head)
		head2[1] = 2
		b, err := l.LogHead(ctx, "srv_1", 43, head2)
		if err != nil || b.Index != 6 {
			t.Fatalf("a new head: %+v %v", b, err)
		}
		if _, err := l.LogHead(ctx, "srv 1", 43, head2); err == nil {
			t.Fatal("a survey id with a space was logged")
		}
	})
}

// TestShredUnlinksAccount: entries name an account only by a commitment
// under its salt; once Shred deleted the salt, the log holds the entries
// unchanged (the tree and its proofs stand), no row of the log's tables
// names the account, and an attachment of its entry carries no salt.
func TestShredUnlinksAccount(t *testing.T) {
	dbtest.Run(t, []db.Migrations{translog.Migrations()}, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		l, _ := newLog(t, d)
		appendN(t, d, l, 0, 14, 5) // acc_0 to acc_6, two devices each
		e := entry(3)
		a, err := l.Attach(ctx, e.Kind, e.Device, e.Cert, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := transparency.ParseEntry(a.Entry)
		if err != nil || !got.NamesAccount("acc_3", a.Salt) || got.NamesAccount("acc_4", a.Salt) {
			t.Fatalf("entry %q with salt %x: %v", a.Entry, a.Salt, err)
		}
		c, err := l.Commitment(ctx, "acc_3")
		if err != nil || c != got.Commitment {
			t.Fatalf("commitment %v %v, entry names %v", c, err, got.Commitment)
		}
		_, before, _ := l.Latest(ctx)
		if err := d.Tx(ctx, func(tx *sql.Tx) error { return l.Shred(ctx, tx, "acc_3") }); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"translog_entries", "translog_account_salts", "translog_hashes", "translog_checkpoints"} {
			var n int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			rows, err := d.Query(ctx, `SELECT * FROM `+table)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				for _, v := range vals {
					if strings.Contains(fmt.Sprint(v), "acc_3") || strings.Contains(fmt.Sprintf("%s", v), "acc_3") {
						t.Errorf("a row of %s names acc_3 after the shred: %v", table, vals)
					}
				}
			}
			rows.Close()
		}
		if _, err := l.Commitment(ctx, "acc_3"); !errors.Is(err, translog.ErrNotFound) {
			t.Errorf("a commitment of the shredded account: %v", err)
		}
		a2, err := l.Attach(ctx, e.Kind, e.Device, e.Cert, "")
		if err != nil {
			t.Fatal(err)
		}
		if a2.Salt != nil || string(a2.Entry) != string(a.Entry) {
			t.Errorf("after the shred the attachment has salt %x and entry %q (was %q)", a2.Salt, a2.Entry, a.Entry)
		}
		if _, after, _ := l.Latest(ctx); after != before {
			t.Errorf("the shred changed the tree: %+v, was %+v", after, before)
		}
		// Another account keeps its salt.
		if other, err := l.Attach(ctx, e.Kind, entry(4).Device, entry(4).Cert, ""); err != nil || len(other.Salt) != transparency.SaltBytes {
			t.Errorf("acc_4's attachment: salt %x, %v", other.Salt, err)
		}
	})
}
