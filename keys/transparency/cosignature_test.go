package transparency

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The example of C2SP tlog-cosignature (section "Ed25519 signed message"
// and the introduction), copied from the spec text.
const (
	specBody    = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	specMessage = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	specLine    = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)

// TestCosignatureSpecVector checks kanal's cosignature/v1 encoding against
// the spec text: the signed message of the spec's example is byte for byte
// the spec's, and the spec's example signature line has the spec's layout
// (4-byte key ID, the example's timestamp big-endian, 64-byte signature).
func TestCosignatureSpecVector(t *testing.T) {
	if got := string(CosignedMessage([]byte(specBody), 1679315147)); got != specMessage {
		t.Fatalf("signed message\n%q\nwant the spec's\n%q", got, specMessage)
	}
	sig, err := ParseSignatureLine(specLine)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(sig.Base64)
	if sig.Name != "witness.example.com/w1" || len(raw) != 4+8+64 || binary.BigEndian.Uint64(raw[4:12]) != 1679315147 {
		t.Fatalf("spec line parsed as %+v, %d bytes, time %d", sig, len(raw), binary.BigEndian.Uint64(raw[4:12]))
	}
	// The key ID rule, computed here without kanal's helpers: SHA-256(name
	// || "\n" || 0x04 || public key)[:4].
	seed := bytes.Repeat([]byte{0x42}, 32)
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	name := "witness.example.org/w1"
	h := sha256.Sum256(append(append([]byte(name), '\n', 0x04), pub...))
	skey := "PRIVATE+KEY+" + name + "+" + hexID(h[:4]) + "+" + base64.StdEncoding.EncodeToString(append([]byte{4}, seed...))
	c, err := NewCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	wantV := name + "+" + hexID(h[:4]) + "+" + base64.StdEncoding.EncodeToString(append([]byte{4}, pub...))
	if c.Verifier() != wantV {
		t.Fatalf("verifier key %s, want %s", c.Verifier(), wantV)
	}
	line, err := c.Cosign([]byte(specBody), time.Unix(1679315147, 0))
	if err != nil {
		t.Fatal(err)
	}
	// Ed25519 is deterministic: the line is exactly what crypto/ed25519
	// gives for the spec's message.
	want := "— " + name + " " + base64.StdEncoding.EncodeToString(append(append(append([]byte{}, h[:4]...),
		0, 0, 0, 0, 0x64, 0x18, 0x50, 0xcb), ed25519.Sign(priv, []byte(specMessage))...))
	if line != want {
		t.Fatalf("cosignature\n%s\nwant\n%s", line, want)
	}
	v, err := NewCosignatureVerifier(wantV)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ParseSignatureLine(line)
	if ts, err := v.Verify([]byte(specBody), s); err != nil || ts.Unix() != 1679315147 {
		t.Fatalf("verify: %v %v", ts, err)
	}
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// testLog is a log key and a signed checkpoint body.
func testLog(t *testing.T, size int64) (note.Verifier, []byte) {
	t.Helper()
	skey, vkey, err := GenerateKey(rand.Reader, "kanal.example/log")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := NewVerifier(vkey)
	msg, err := Sign(Checkpoint{Origin: "kanal.example/log", Size: size, Hash: [32]byte{1, 2, 3}}, s)
	if err != nil {
		t.Fatal(err)
	}
	return v, msg
}

func witnesses(t *testing.T, n int) ([]*Cosigner, []string) {
	t.Helper()
	var cs []*Cosigner
	var vs []string
	for i := range n {
		skey, vkey, err := GenerateCosignerKey(rand.Reader, "witness.example/"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewCosigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		cs, vs = append(cs, c), append(vs, vkey)
	}
	return cs, vs
}

func cosign(t *testing.T, msg []byte, at time.Time, cs ...*Cosigner) []byte {
	t.Helper()
	body := msg[:bytes.Index(msg, []byte("\n\n"))+1]
	for _, c := range cs {
		line, err := c.Cosign(body, at)
		if err != nil {
			t.Fatal(err)
		}
		msg = AddSignatures(msg, line)
	}
	return msg
}

// TestPolicyQuorum: a checkpoint counts only valid, fresh cosignatures of
// distinct listed witnesses, and must reach the quorum.
func TestPolicyQuorum(t *testing.T) {
	now := time.Unix(1767225600, 0)
	logV, msg := testLog(t, 10)
	cs, vs := witnesses(t, 3)
	p, err := NewWitnessPolicy(vs, 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	outsider, _ := witnesses(t, 1)
	stranger, _ := NewCosigner(mustSkey(t, "stranger.example/w"))
	forged := func() []byte {
		// witness a's name and key ID, another key's signature
		if _, err := NewCosigner(mustSkeyLike(t, cs[0])); err == nil {
			t.Fatal("a signer key whose key ID is not its key's was accepted")
		}
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		return cosign(t, msg, now, &Cosigner{name: cs[0].name, id: cs[0].id, key: k})
	}
	cases := []struct {
		name string
		msg  []byte
		ok   bool
		n    int
	}{
		{"none", msg, false, 0},
		{"one", cosign(t, msg, now, cs[0]), false, 1},
		{"two", cosign(t, msg, now, cs[0], cs[1]), true, 2},
		{"three", cosign(t, msg, now, cs...), true, 3},
		{"the same witness twice", cosign(t, msg, now, cs[0], cs[0]), false, 1},
		{"one and an unlisted witness", cosign(t, msg, now, cs[0], outsider[0], stranger), false, 1},
		{"one and a forged one", append(cosign(t, msg, now, cs[1]), forged()[len(msg):]...), false, 1},
		{"two, one too old", append(cosign(t, msg, now.Add(-2*time.Hour), cs[0]), cosign(t, msg, now, cs[1])[len(msg):]...), false, 1},
		{"two, one from the future", append(cosign(t, msg, now.Add(time.Hour), cs[0]), cosign(t, msg, now, cs[1])[len(msg):]...), false, 1},
		{"two, a little skew", cosign(t, msg, now.Add(time.Minute), cs[0], cs[1]), true, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, got, err := p.Check(c.msg, logV, now)
			if c.ok != (err == nil) || len(got) != c.n {
				t.Fatalf("Check = %d cosignatures, %v; want ok=%v with %d", len(got), err, c.ok, c.n)
			}
			if !c.ok && !errors.Is(err, ErrQuorum) {
				t.Fatalf("error %v is not ErrQuorum", err)
			}
		})
	}
	// CheckCosigned counts the same without the log key.
	if got, err := p.CheckCosigned(cosign(t, msg, now, cs[0], cs[2]), now); err != nil || len(got) != 2 {
		t.Fatalf("CheckCosigned: %d %v", len(got), err)
	}
	if _, err := p.CheckCosigned(cosign(t, msg, now, cs[0]), now); !errors.Is(err, ErrQuorum) {
		t.Fatalf("CheckCosigned with one: %v", err)
	}
	// A cosignature over another checkpoint of the same log does not count.
	_, other := testLog(t, 11)
	moved := AddSignatures(msg, strings.Split(strings.TrimSpace(string(cosign(t, other, now, cs[0], cs[1])[len(other):])), "\n")...)
	if _, _, err := p.Check(moved, logV, now); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrQuorum) {
		t.Fatalf("cosignatures of another checkpoint: %v", err)
	}
	// The policy itself refuses nonsense.
	for _, q := range []int{-1, 4} {
		if _, err := NewWitnessPolicy(vs, q, 0); err == nil {
			t.Fatalf("quorum %d of 3 accepted", q)
		}
	}
	if _, err := NewWitnessPolicy([]string{vs[0], vs[0]}, 1, 0); err == nil {
		t.Fatal("a witness listed twice")
	}
	if _, err := NewWitnessPolicy([]string{"witness.example/a+00000000+AAAA"}, 1, 0); err == nil {
		t.Fatal("a malformed key")
	}
}

func mustSkey(t *testing.T, name string) string {
	s, _, err := GenerateCosignerKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mustSkeyLike returns a signer key that claims c's name and key ID but
// holds another key (NewCosigner refuses it, so it is built by hand).
func mustSkeyLike(t *testing.T, c *Cosigner) string {
	seed := make([]byte, 32)
	rand.Read(seed)
	return "PRIVATE+KEY+" + c.name + "+" + hexID(binary.BigEndian.AppendUint32(nil, c.id)) + "+" + base64.StdEncoding.EncodeToString(append([]byte{4}, seed...))
}

// BenchmarkQuorumCheck3 checks a checkpoint carrying three cosignatures
// against a policy of three witnesses with quorum 3 (log signature too).
func BenchmarkQuorumCheck3(b *testing.B) {
	t := &testing.T{}
	now := time.Unix(1767225600, 0)
	logV, msg := testLog(t, 1000000)
	cs, vs := witnesses(t, 3)
	p, _ := NewWitnessPolicy(vs, 3, time.Hour)
	msg = cosign(t, msg, now, cs...)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Check(msg, logV, now); err != nil {
			b.Fatal(err)
		}
	}
}
