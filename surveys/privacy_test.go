package surveys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"sort"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// columns returns a table's column names on either engine.
func columns(t *testing.T, d *db.DB, table string) []string {
	t.Helper()
	q := `SELECT name FROM pragma_table_info($1)`
	if d.Dialect() == db.Postgres {
		q = `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`
	}
	rows, err := d.Query(context.Background(), q, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// TestSchemaCannotJoinBallotToAccount checks the property that anonymity
// rests on at the storage level. A query can only join rows through
// values they share. The board (ballots and nullifiers) holds no account,
// device or session column and no time; the token table holds the
// account, a hash of the blinded request and the blind signature, none of
// which the board holds (the blind signature differs from the token's
// signature by the unknown blinding factor). The only column the two
// share is survey_id, which every ballot and every recipient of a token
// of one survey have in common, so joining on it relates everyone to
// everyone. survey_named_voters, the one table with
// both an account and a board position, stays empty for anonymous
// surveys. The test fails if any of this stops being true: a column added
// to either table, a foreign key between them, a named-voter row for an
// anonymous ballot, or a stored value that reappears on the other side.
func TestSchemaCannotJoinBallotToAccount(t *testing.T) {
	dbtest.Run(t, sets, func(t *testing.T, d *db.DB) {
		board := columns(t, d, "survey_board")
		tokens := columns(t, d, "survey_tokens")
		wantBoard := []string{"ciphertext", "hash", "nullifier", "prev", "seq", "survey_id", "token_message", "token_signature"}
		wantTokens := []string{"account_id", "blind_sig", "blinded_hash", "survey_id"}
		if strings.Join(board, ",") != strings.Join(wantBoard, ",") {
			t.Fatalf("survey_board columns %v, want %v: review what a new column could link before changing this", board, wantBoard)
		}
		if strings.Join(tokens, ",") != strings.Join(wantTokens, ",") {
			t.Fatalf("survey_tokens columns %v, want %v", tokens, wantTokens)
		}
		for _, c := range board {
			for _, bad := range []string{"account", "device", "session", "_at", "time", "created"} {
				if strings.Contains(c, bad) {
					t.Errorf("survey_board has column %s", c)
				}
			}
		}

		// Run an anonymous survey and look at the stored values.
		e := newEnv(t, d)
		def, _ := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt)
		for i := range 5 {
			if _, err := e.cast(def, e.token(t, def, voter(i)), intended(i)); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.count(t, `SELECT COUNT(*) FROM survey_named_voters WHERE survey_id = $1`, def.SurveyID); n != 0 {
			t.Fatalf("%d named-voter rows for an anonymous survey", n)
		}
		var tokenValues [][]byte
		rows, err := d.Query(context.Background(), `SELECT account_id, blinded_hash, blind_sig FROM survey_tokens WHERE survey_id = $1`, def.SurveyID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var acc string
			var h, bs []byte
			if err := rows.Scan(&acc, &h, &bs); err != nil {
				t.Fatal(err)
			}
			tokenValues = append(tokenValues, []byte(acc), h, bs)
		}
		rows.Close()
		entries, _ := e.board(t, def)
		for _, en := range entries {
			for _, field := range [][]byte{en.Prev, en.Nullifier, en.TokenMessage, en.TokenSignature, en.Ciphertext, en.Hash} {
				for _, v := range tokenValues {
					if bytes.Contains(field, v) {
						t.Fatalf("a value of survey_tokens appears in board entry %d", en.Seq)
					}
				}
			}
		}
	})
}

// TestBlindRequestRevealsNothing shows what the server sees of a token
// request — the blinded value and its blind signature — and what it later
// sees in a ballot — the prepared message and the signature — and that it
// cannot match them. For RSA blind signatures this holds perfectly: for
// every request i and every token j there is a blinding factor
// r = blindSig_i · sig_j⁻¹ (mod n) with blinded_i = encoded_j · r^e and
// sig_j = blindSig_i · r⁻¹, so each request explains each token equally
// well, even to someone holding the private key. The test computes that
// factor for every pair with the server's own key and checks both
// equations, and checks that no byte string of a request reappears in a
// ballot.
func TestBlindRequestRevealsNothing(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t, sets...))
	def, _ := e.survey(t, ModeAnonymous, everyone)
	e.clk.set(def.OpensAt)
	ctx := context.Background()

	const n = 3
	var blinded, blindSigs [][]byte
	var tokens []*Token
	for i := range n {
		req, err := NewTokenRequest(def)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := e.s.IssueToken(ctx, voter(i), def.SurveyID, req.Blinded)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := req.Finalize(bs)
		if err != nil {
			t.Fatal(err)
		}
		blinded, blindSigs = append(blinded, req.Blinded), append(blindSigs, bs)
		// Tokens are spent in another order than they were issued.
		tokens = append([]*Token{tok}, tokens...)
	}
	r, err := e.s.load(ctx, def.SurveyID)
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.s.parsed(r)
	if err != nil {
		t.Fatal(err)
	}
	N, E := o.tokenKey.N, big.NewInt(int64(o.tokenKey.E))
	for i := range n {
		for j := range n {
			bs := new(big.Int).SetBytes(blindSigs[i])
			sig := new(big.Int).SetBytes(tokens[j].Signature)
			sigInv := new(big.Int).ModInverse(sig, N)
			if sigInv == nil {
				t.Fatal("signature not invertible")
			}
			rf := new(big.Int).Mod(new(big.Int).Mul(bs, sigInv), N)
			encoded := new(big.Int).Exp(sig, E, N)
			lhs := new(big.Int).Mod(new(big.Int).Mul(encoded, new(big.Int).Exp(rf, E, N)), N)
			if lhs.Cmp(new(big.Int).SetBytes(blinded[i])) != 0 {
				t.Fatalf("request %d cannot explain token %d", i, j)
			}
			rInv := new(big.Int).ModInverse(rf, N)
			if new(big.Int).Mod(new(big.Int).Mul(bs, rInv), N).Cmp(sig) != 0 {
				t.Fatalf("request %d does not unblind to token %d", i, j)
			}
		}
	}
	for i := range n {
		h := sha256.Sum256(blinded[i])
		for _, tok := range tokens {
			for _, secret := range [][]byte{blinded[i], blindSigs[i], h[:]} {
				if bytes.Contains(tok.Message, secret[:32]) || bytes.Contains(tok.Signature, secret[:32]) {
					t.Fatalf("request %d reappears in a token", i)
				}
			}
		}
	}
}

// TestTokenKeySealedAtRest: the database holds the survey's RSA key only
// sealed, so a dump cannot mint tokens, and a sealed key copied to
// another survey's row does not open there.
func TestTokenKeySealedAtRest(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t, sets...))
	a, _ := e.survey(t, ModeAnonymous, everyone)
	b, _ := e.survey(t, ModeAnonymous, everyone)
	ctx := context.Background()
	var sealed []byte
	if err := e.d.QueryRow(ctx, `SELECT token_key FROM surveys WHERE id = $1`, a.SurveyID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS1PrivateKey(sealed); err == nil {
		t.Fatal("the token key is stored in the clear")
	}
	r, _ := e.s.load(ctx, a.SurveyID)
	o, err := e.s.parsed(r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, o.tokenKey.D.Bytes()[:32]) {
		t.Fatal("the private exponent is visible in the stored key")
	}
	if _, err := e.d.Exec(ctx, `UPDATE surveys SET token_key = $1 WHERE id = $2`, sealed, b.SurveyID); err != nil {
		t.Fatal(err)
	}
	e.clk.set(b.OpensAt)
	req, _ := NewTokenRequest(b)
	if _, err := e.s.IssueToken(ctx, voter(1), b.SurveyID, req.Blinded); err == nil || !strings.Contains(err.Error(), "does not unseal") {
		t.Fatalf("a key moved to another survey: %v", err)
	}
}
