package surveys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

var writeVectors = flag.Bool("write-vectors", false, "rewrite surveys/testdata/spec/* from a fresh board")

// The files of testdata/spec, cited by docs/surveys.md ("Test vectors").
// Each holds the exact bytes kanald serves (json.Encoder output, with its
// trailing newline), so the notary signatures verify over them as is.
const (
	specCA      = "testdata/spec/ca.pem"
	specSurvey  = "testdata/spec/survey.json"  // GET /v1/surveys/{id}
	specBoard   = "testdata/spec/board.json"   // GET /v1/surveys/{id}/board?after=0&limit=1000
	specResult  = "testdata/spec/result.json"  // GET /v1/surveys/{id}/result
	specNamed   = "testdata/spec/named.json"   // a named-mode nullifier
	specReceipt = "testdata/spec/receipt.json" // POST /v1/surveys/{id}/ballots answer for entry 1
)

// TestVerifierSpec recomputes a board from the rules written in
// docs/surveys.md ("For verifiers"), with its own code: it calls none of
// this package's hashing, token, ballot or tally functions. It runs on the
// stored vectors (so the document and the files agree) and on a board the
// service makes now (so the code and the document agree); with
// -write-vectors it stores the fresh board as the new vectors.
func TestVerifierSpec(t *testing.T) {
	fresh := freshSpecBoard(t)
	t.Run("fresh", func(t *testing.T) { verifyBySpec(t, fresh) })
	if *writeVectors {
		if err := os.MkdirAll("testdata/spec", 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range fresh {
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	stored := map[string][]byte{}
	for _, name := range []string{specCA, specSurvey, specBoard, specResult, specNamed, specReceipt} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		stored[name] = b
	}
	t.Run("stored", func(t *testing.T) { verifyBySpec(t, stored) })
}

// freshSpecBoard runs a small anonymous survey through the service and
// returns the bytes kanald would serve.
func freshSpecBoard(t *testing.T) map[string][]byte {
	e, def, tk, _, _, recs := boardOf(t, 3)
	ctx := context.Background()
	served := func(v any) []byte {
		var b bytes.Buffer
		if err := json.NewEncoder(&b).Encode(v); err != nil { // as web.WriteJSON
			t.Fatal(err)
		}
		return b.Bytes()
	}
	sv, err := e.s.Get(ctx, def.SurveyID)
	if err != nil {
		t.Fatal(err)
	}
	page, err := e.s.Page(ctx, def.SurveyID, 0, MaxBoardPage)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.s.Tally(ctx, e.org.Caller, def.SurveyID, tk.Private)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]string{"survey_id": def.SurveyID, "account": "acc_ab12cd34ef56gh78",
		"nullifier": fmt.Sprintf("%x", NamedNullifier(def.SurveyID, "acc_ab12cd34ef56gh78"))}
	nb, _ := json.MarshalIndent(named, "", "  ")
	return map[string][]byte{specCA: e.p.ca.CertPEM(), specSurvey: served(sv), specBoard: served(page),
		specResult: served(res), specNamed: append(nb, '\n'), specReceipt: served(recs[0])}
}

// The verifier's own view of the wire shapes (docs/surveys.md). []byte
// fields are standard base64 with padding, as encoding/json writes them.
type specSigned struct {
	Head      json.RawMessage `json:"head"`
	Statement json.RawMessage `json:"statement"`
	Signature []byte          `json:"signature"`
	Notary    []byte          `json:"notary_certificate"`
}

type specEntry struct {
	Seq            int64  `json:"seq"`
	Prev           []byte `json:"prev"`
	Nullifier      []byte `json:"nullifier"`
	TokenMessage   []byte `json:"token_message"`
	TokenSignature []byte `json:"token_signature"`
	Voter          string `json:"voter"`
	Ciphertext     []byte `json:"ciphertext"`
	Hash           []byte `json:"hash"`
}

func verifyBySpec(t *testing.T, files map[string][]byte) {
	blk, _ := pem.Decode(files[specCA])
	if blk == nil {
		t.Fatal("ca.pem: no PEM block")
	}
	caCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// The notary: an Ed25519 certificate issued by the CA; it signs
	// "kanal notary v1" 0x00 purpose 0x00 ‖ the exact bytes served.
	notarized := func(s specSigned, purpose string, body []byte) {
		t.Helper()
		nc, err := x509.ParseCertificate(s.Notary)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.CheckSignatureFrom(caCert); err != nil {
			t.Fatalf("notary certificate: %v", err)
		}
		pub, ok := nc.PublicKey.(ed25519.PublicKey)
		if !ok {
			t.Fatal("notary key is not Ed25519")
		}
		msg := append([]byte("kanal notary v1\x00"+purpose+"\x00"), body...)
		if !ed25519.Verify(pub, msg, s.Signature) {
			t.Fatalf("%s: notary signature does not verify", purpose)
		}
	}

	var sv struct {
		Signed struct {
			Definition json.RawMessage `json:"definition"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(files[specSurvey], &sv); err != nil {
		t.Fatal(err)
	}
	var def struct {
		SurveyID  string `json:"survey_id"`
		TokenKey  []byte `json:"token_key"`
		TallyKey  []byte `json:"tally_key"`
		Questions []struct {
			Kind    string   `json:"kind"`
			Options []string `json:"options"`
		} `json:"questions"`
	}
	if err := json.Unmarshal(sv.Signed.Definition, &def); err != nil {
		t.Fatal(err)
	}
	id := def.SurveyID
	k, err := x509.ParsePKIXPublicKey(def.TokenKey) // SPKI DER
	if err != nil {
		t.Fatal(err)
	}
	tokenKey := k.(*rsa.PublicKey)

	var page struct {
		Head    specSigned  `json:"head"`
		Entries []specEntry `json:"entries"`
	}
	if err := json.Unmarshal(files[specBoard], &page); err != nil {
		t.Fatal(err)
	}
	notarized(page.Head, "surveys.board-head", page.Head.Head)
	var head struct {
		SurveyID string    `json:"survey_id"`
		Length   int64     `json:"length"`
		Hash     []byte    `json:"hash"`
		At       time.Time `json:"at"`
	}
	if err := json.Unmarshal(page.Head.Head, &head); err != nil {
		t.Fatal(err)
	}
	if head.SurveyID != id || head.Length != int64(len(page.Entries)) || len(page.Entries) == 0 {
		t.Fatalf("head %+v for %d entries", head, len(page.Entries))
	}

	// Genesis: SHA-256("kanal survey board v1" 0x00 ‖ survey id).
	g := sha256.Sum256([]byte("kanal survey board v1\x00" + id))
	prev := g[:]
	for i, e := range page.Entries {
		if e.Seq != int64(i+1) || !bytes.Equal(e.Prev, prev) {
			t.Fatalf("entry %d: seq %d or prev wrong", i+1, e.Seq)
		}
		// Entry hash: SHA-256 over nine fields, each u64be(len) ‖ bytes.
		h := sha256.New()
		var seq [8]byte
		binary.BigEndian.PutUint64(seq[:], uint64(e.Seq))
		for _, f := range [][]byte{[]byte("kanal survey board entry v1"), []byte(id), seq[:], e.Prev, e.Nullifier,
			e.TokenMessage, e.TokenSignature, []byte(e.Voter), e.Ciphertext} {
			var n [8]byte
			binary.BigEndian.PutUint64(n[:], uint64(len(f)))
			h.Write(n[:])
			h.Write(f)
		}
		if !bytes.Equal(h.Sum(nil), e.Hash) {
			t.Fatalf("entry %d: hash differs from the documented rule", e.Seq)
		}
		// Token message: prefix(32) ‖ "kanal survey token v1" 0x00 ‖ id ‖ 0x00 ‖ nonce(32).
		m := e.TokenMessage
		wantMid := "kanal survey token v1\x00" + id + "\x00"
		if len(m) != 32+len(wantMid)+32 || string(m[32:32+len(wantMid)]) != wantMid {
			t.Fatalf("entry %d: token message layout", e.Seq)
		}
		// Token signature: RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48,
		// over the whole message, prefix included (RFC 9474).
		d := sha512.Sum384(m)
		if err := rsa.VerifyPSS(tokenKey, crypto.SHA384, d[:], e.TokenSignature, &rsa.PSSOptions{SaltLength: 48}); err != nil {
			t.Fatalf("entry %d: token signature: %v", e.Seq, err)
		}
		// Nullifier: SHA-256("kanal survey nullifier v1" 0x00 ‖ token message).
		nf := sha256.Sum256(append([]byte("kanal survey nullifier v1\x00"), m...))
		if !bytes.Equal(nf[:], e.Nullifier) {
			t.Fatalf("entry %d: nullifier", e.Seq)
		}
		prev = e.Hash
	}
	if !bytes.Equal(prev, head.Hash) {
		t.Fatal("the board does not end at the signed head")
	}

	// The result: notarized statement; its tally key (raw X25519, 32
	// bytes) opens every ballot: HPKE base mode, enc(32) ‖ ct, info
	// "kanal survey ballot v1" 0x00 ‖ id ‖ 0x00 ‖ nullifier; plaintext a
	// JSON object padded with spaces to a multiple of 1024 bytes.
	var res specSigned
	if err := json.Unmarshal(files[specResult], &res); err != nil {
		t.Fatal(err)
	}
	notarized(res, "surveys.result", res.Statement)
	var st struct {
		TallyKey []byte `json:"tally_key"`
		Result   struct {
			Valid   int `json:"valid"`
			Invalid []struct {
				Seq int64 `json:"seq"`
			} `json:"invalid"`
			BoardHead string `json:"board_head"`
			Questions []struct {
				Options []struct {
					Count int `json:"count"`
				} `json:"options"`
			} `json:"questions"`
		} `json:"result"`
	}
	if err := json.Unmarshal(res.Statement, &st); err != nil {
		t.Fatal(err)
	}
	if st.Result.BoardHead != fmt.Sprintf("%x", head.Hash) {
		t.Fatal("result names another board head")
	}
	priv, err := hpke.DHKEM(ecdh.X25519()).NewPrivateKey(st.TallyKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), def.TallyKey) {
		t.Fatal("published tally key is not the definition's")
	}
	firstChoice := make([]int, len(def.Questions[0].Options))
	valid := 0
	for _, e := range page.Entries {
		info := append([]byte("kanal survey ballot v1\x00"+id+"\x00"), e.Nullifier...)
		plain, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, e.Ciphertext)
		if err != nil || len(plain)%1024 != 0 {
			t.Fatalf("entry %d: does not open (%v) or is not padded", e.Seq, err)
		}
		var b struct {
			Answers []json.RawMessage `json:"answers"`
		}
		if err := json.Unmarshal(bytes.TrimRight(plain, " "), &b); err != nil {
			t.Fatalf("entry %d: %v", e.Seq, err)
		}
		var first int
		if json.Unmarshal(b.Answers[0], &first) != nil || first < 0 || first >= len(firstChoice) {
			continue // invalid: the result must list it
		}
		valid++
		firstChoice[first]++
	}
	// boardOf's second ballot is out of range on the first question.
	if st.Result.Valid != valid || len(st.Result.Invalid) != len(page.Entries)-valid {
		t.Fatalf("result: %d valid, %d invalid; recounted %d valid of %d", st.Result.Valid, len(st.Result.Invalid), valid, len(page.Entries))
	}
	for i, n := range firstChoice {
		if st.Result.Questions[0].Options[i].Count != n {
			t.Fatalf("question 1, option %d: result %d, recounted %d", i, st.Result.Questions[0].Options[i].Count, n)
		}
	}

	// Receipt: the notary signs (purpose surveys.receipt)
	// "kanal survey receipt v1" 0x00 ‖ id ‖ 0x00 ‖ u64be(seq) ‖
	// u64be(len(hash)) ‖ hash ‖ u64be(at as Unix seconds).
	var rc struct {
		SurveyID  string    `json:"survey_id"`
		Seq       int64     `json:"seq"`
		Hash      []byte    `json:"hash"`
		At        time.Time `json:"at"`
		Signature []byte    `json:"signature"`
		Notary    []byte    `json:"notary_certificate"`
	}
	if err := json.Unmarshal(files[specReceipt], &rc); err != nil {
		t.Fatal(err)
	}
	rm := []byte("kanal survey receipt v1\x00" + rc.SurveyID + "\x00")
	rm = binary.BigEndian.AppendUint64(rm, uint64(rc.Seq))
	rm = binary.BigEndian.AppendUint64(rm, uint64(len(rc.Hash)))
	rm = append(rm, rc.Hash...)
	rm = binary.BigEndian.AppendUint64(rm, uint64(rc.At.Unix()))
	notarized(specSigned{Signature: rc.Signature, Notary: rc.Notary}, "surveys.receipt", rm)
	if rc.SurveyID != id || rc.Seq < 1 || rc.Seq > int64(len(page.Entries)) || !bytes.Equal(page.Entries[rc.Seq-1].Hash, rc.Hash) {
		t.Fatal("the receipt's entry is not on the board")
	}

	// Named mode: SHA-256("kanal survey nullifier v1" 0x00 "named" 0x00 ‖ id ‖ 0x00 ‖ account).
	var nv struct {
		SurveyID  string `json:"survey_id"`
		Account   string `json:"account"`
		Nullifier string `json:"nullifier"`
	}
	if err := json.Unmarshal(files[specNamed], &nv); err != nil {
		t.Fatal(err)
	}
	nn := sha256.Sum256([]byte("kanal survey nullifier v1\x00named\x00" + nv.SurveyID + "\x00" + nv.Account))
	if fmt.Sprintf("%x", nn) != nv.Nullifier {
		t.Fatal("named nullifier differs from the documented rule")
	}
}
