package keys

import (
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"
)

// detReader is a deterministic byte stream for tests: SHA-256(seed || ctr)
// blocks. It stands in for crypto/rand so transcripts are reproducible.
type detReader struct {
	seed string
	ctr  uint64
	buf  []byte
}

func newDetReader(seed string) *detReader { return &detReader{seed: seed} }

func (r *detReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			var in []byte
			in = append(in, r.seed...)
			in = binary.BigEndian.AppendUint64(in, r.ctr)
			r.ctr++
			h := sha256.Sum256(in)
			r.buf = h[:]
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return n, nil
}

// detEncapsulate uses FIPS 203's derandomized encapsulation with 32 bytes
// from r, so PQXDH transcripts are fixed.
func detEncapsulate(r io.Reader) encapsulateFunc {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		m := make([]byte, 32)
		if _, err := io.ReadFull(r, m); err != nil {
			return nil, nil, err
		}
		return mlkemtest.Encapsulate768(ek, m)
	}
}

// party is one device with all its keys.
type party struct {
	deviceID string
	id       IdentityPrivate
	spk      SignedPrekeyPrivate
	pq       PQPrekeyPrivate
	opk      OneTimePrekeyPrivate
}

func newParty(t testing.TB, r io.Reader, deviceID string) *party {
	t.Helper()
	p := &party{deviceID: deviceID}
	var err error
	if p.id, err = GenerateIdentity(r); err != nil {
		t.Fatal(err)
	}
	if p.spk, err = GenerateSignedPrekey(r, 7); err != nil {
		t.Fatal(err)
	}
	if p.pq, err = GeneratePQPrekey(r, 9, true); err != nil {
		t.Fatal(err)
	}
	if p.opk, err = GenerateOneTimePrekey(r, 11); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *party) bundle(t testing.TB, withOPK bool) *PrekeyBundle {
	t.Helper()
	var opk *OneTimePrekeyPrivate
	if withOPK {
		opk = &p.opk
	}
	b, err := NewPrekeyBundle(p.deviceID, p.id, p.spk, p.pq, opk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *party) responderKeys(withOPK bool) ResponderPrekeys {
	k := ResponderPrekeys{Identity: p.id, SignedPrekey: p.spk, PQPrekey: p.pq}
	if withOPK {
		k.OneTimePrekey = &p.opk
	}
	return k
}

// newSessionPair runs PQXDH between fresh parties and returns Alice's
// (initiator) and Bob's (responder) sessions. With a nil reader everything
// uses crypto/rand.
func newSessionPair(t testing.TB, r io.Reader) (alice, bob *Session) {
	t.Helper()
	a := newParty(t, r, "alice-phone")
	b := newParty(t, r, "bob-laptop")
	encap := encapsulateFunc(stdEncapsulate)
	if r != nil {
		encap = detEncapsulate(r)
	}
	init, err := initiatePQXDH(r, a.id, b.bundle(t, true), encap)
	if err != nil {
		t.Fatal(err)
	}
	sk, ad, err := RespondPQXDH(b.responderKeys(true), &init.Message)
	if err != nil {
		t.Fatal(err)
	}
	if alice, err = NewInitiatorSession(r, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey); err != nil {
		t.Fatal(err)
	}
	if bob, err = NewResponderSession(r, sk, ad, b.spk); err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

func mustEncrypt(t testing.TB, s *Session, pt string) []byte {
	t.Helper()
	ct, err := s.Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func mustDecrypt(t testing.TB, s *Session, ct []byte, want string) {
	t.Helper()
	pt, err := s.Decrypt(ct)
	if err != nil {
		t.Fatalf("decrypt %q: %v", want, err)
	}
	if string(pt) != want {
		t.Fatalf("decrypt = %q, want %q", pt, want)
	}
}

// cloneSession copies a session through its serialization, which is also
// what an attacker who steals the client's store gets.
func cloneSession(t testing.TB, s *Session) *Session {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c, err := UnmarshalSession(s.rand, b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
