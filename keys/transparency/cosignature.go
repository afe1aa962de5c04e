package transparency

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Witness cosignatures, C2SP tlog-cosignature (cosignature/v1, Ed25519).
//
// A witness keeps the newest checkpoint it has verified for a log, checks
// that every newer one is consistent with it, and signs each it accepts:
//
//	cosignature/v1
//	time <POSIX seconds, decimal, no leading zeros>
//	<the checkpoint's note body, final newline included>
//
// The signature travels as a note signature line,
//
//	— <witness name> base64(key ID[4] || timestamp[8, big-endian] || Ed25519 signature[64])
//
// where key ID = SHA-256(name || "\n" || 0x04 || public key)[:4]. Keys are
// written like note keys with algorithm byte 0x04: the verifier key
// "<name>+<key ID hex>+base64(0x04 || public key)" and the signer key
// "PRIVATE+KEY+<name>+<key ID hex>+base64(0x04 || 32-byte seed)".

// AlgCosignatureV1 is the signature type byte of cosignature/v1 keys.
const AlgCosignatureV1 = 0x04

// Errors of cosignatures and witness policies.
var (
	ErrCosignerKey = errors.New("transparency: invalid cosigner key")
	ErrCosignature = errors.New("transparency: cosignature does not verify")
	ErrQuorum      = errors.New("transparency: checkpoint lacks the witness quorum")
)

// CosignedMessage is the message a cosignature/v1 signs for the checkpoint
// body at time t (whole seconds).
func CosignedMessage(body []byte, t uint64) []byte {
	msg := make([]byte, 0, len("cosignature/v1\ntime \n")+20+len(body))
	msg = append(msg, "cosignature/v1\ntime "...)
	msg = strconv.AppendUint(msg, t, 10)
	msg = append(msg, '\n')
	return append(msg, body...)
}

func cosignerKeyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', AlgCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// validKeyName is note's rule for key names: non-empty, no spaces, no '+',
// printable.
func validKeyName(name string) bool {
	if name == "" || len(name) > MaxOriginBytes || strings.ContainsAny(name, "+ \t\n") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x21 || name[i] > 0x7e {
			return false
		}
	}
	return true
}

// GenerateCosignerKey returns a new cosignature/v1 key pair named name
// (a schema-less URL such as "witness.example.org/w1").
func GenerateCosignerKey(rand io.Reader, name string) (signer, verifier string, err error) {
	if !validKeyName(name) {
		return "", "", fmt.Errorf("%w: name %q (no spaces or '+', printable ASCII)", ErrCosignerKey, name)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return "", "", err
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	id := cosignerKeyID(name, pub)
	signer = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{AlgCosignatureV1}, seed...)))
	verifier = fmt.Sprintf("%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{AlgCosignatureV1}, pub...)))
	return signer, verifier, nil
}

// splitKey splits "name+hash+base64(alg||key)" and checks the hash.
func splitKey(s string, size int) (name string, id uint32, key []byte, err error) {
	name, rest, ok1 := strings.Cut(s, "+")
	hexID, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !validKeyName(name) || len(hexID) != 8 {
		return "", 0, nil, fmt.Errorf("%w: want name+keyid+base64", ErrCosignerKey)
	}
	n, err := strconv.ParseUint(hexID, 16, 32)
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: key ID is not 8 hex digits", ErrCosignerKey)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) != 1+size || raw[0] != AlgCosignatureV1 {
		return "", 0, nil, fmt.Errorf("%w: not a cosignature/v1 (0x04) Ed25519 key", ErrCosignerKey)
	}
	return name, uint32(n), raw[1:], nil
}

// Cosigner signs cosignature/v1 cosignatures with one witness key.
type Cosigner struct {
	name string
	id   uint32
	key  ed25519.PrivateKey
}

// NewCosigner parses a signer key from GenerateCosignerKey.
func NewCosigner(skey string) (*Cosigner, error) {
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	if !ok {
		return nil, fmt.Errorf("%w: not a PRIVATE+KEY", ErrCosignerKey)
	}
	name, id, seed, err := splitKey(rest, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	if cosignerKeyID(name, key.Public().(ed25519.PublicKey)) != id {
		return nil, fmt.Errorf("%w: key ID does not match the key", ErrCosignerKey)
	}
	return &Cosigner{name: name, id: id, key: key}, nil
}

// Name is the witness's name.
func (c *Cosigner) Name() string { return c.name }

// Verifier returns the verifier key of c.
func (c *Cosigner) Verifier() string {
	pub := c.key.Public().(ed25519.PublicKey)
	return fmt.Sprintf("%s+%08x+%s", c.name, c.id, base64.StdEncoding.EncodeToString(append([]byte{AlgCosignatureV1}, pub...)))
}

// Cosign signs the checkpoint body (the note text, without signature
// lines) at time t and returns the note signature line, without the final
// newline: "— <name> <base64>".
func (c *Cosigner) Cosign(body []byte, t time.Time) (string, error) {
	if t.Unix() < 0 {
		return "", errors.New("transparency: cosignature time before 1970")
	}
	ts := uint64(t.Unix())
	sig := make([]byte, 4+8, 4+8+ed25519.SignatureSize)
	binary.BigEndian.PutUint32(sig, c.id)
	binary.BigEndian.PutUint64(sig[4:], ts)
	sig = append(sig, ed25519.Sign(c.key, CosignedMessage(body, ts))...)
	return "— " + c.name + " " + base64.StdEncoding.EncodeToString(sig), nil
}

// CosignatureVerifier checks one witness's cosignature/v1 cosignatures.
type CosignatureVerifier struct {
	name string
	id   uint32
	pub  ed25519.PublicKey
	vkey string
}

// NewCosignatureVerifier parses a witness's verifier key
// ("name+keyid+base64(0x04 || public key)").
func NewCosignatureVerifier(vkey string) (*CosignatureVerifier, error) {
	name, id, pub, err := splitKey(vkey, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	if cosignerKeyID(name, pub) != id {
		return nil, fmt.Errorf("%w: key ID does not match the key", ErrCosignerKey)
	}
	return &CosignatureVerifier{name: name, id: id, pub: pub, vkey: vkey}, nil
}

// Name is the witness's name.
func (v *CosignatureVerifier) Name() string { return v.name }

// KeyID is the witness key's ID.
func (v *CosignatureVerifier) KeyID() uint32 { return v.id }

// String is the verifier key.
func (v *CosignatureVerifier) String() string { return v.vkey }

// Verify checks a note signature (as note.Open leaves it in UnverifiedSigs)
// over the checkpoint body and returns the time it states. A signature by
// another name or key ID is ErrCosignature too.
func (v *CosignatureVerifier) Verify(body []byte, sig note.Signature) (time.Time, error) {
	if sig.Name != v.name || sig.Hash != v.id {
		return time.Time{}, fmt.Errorf("%w: signed by %s, not %s", ErrCosignature, sig.Name, v.name)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig.Base64)
	if err != nil || len(raw) != 4+8+ed25519.SignatureSize {
		return time.Time{}, fmt.Errorf("%w: not a cosignature/v1 signature", ErrCosignature)
	}
	ts := binary.BigEndian.Uint64(raw[4:])
	if ts > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("%w: timestamp above 2^63-1", ErrCosignature)
	}
	if !ed25519.Verify(v.pub, CosignedMessage(body, ts), raw[12:]) {
		return time.Time{}, fmt.Errorf("%w: bad signature by %s", ErrCosignature, v.name)
	}
	return time.Unix(int64(ts), 0).UTC(), nil
}

// ParseSignatureLine parses one note signature line "— name base64"
// (without the newline) into a note.Signature.
func ParseSignatureLine(line string) (note.Signature, error) {
	rest, ok := strings.CutPrefix(line, "— ")
	name, b64, ok2 := strings.Cut(rest, " ")
	if !ok || !ok2 || !validKeyName(name) {
		return note.Signature{}, fmt.Errorf("%w: not a note signature line", ErrCosignature)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) < 4 {
		return note.Signature{}, fmt.Errorf("%w: signature is not base64 with a key ID", ErrCosignature)
	}
	return note.Signature{Name: name, Hash: binary.BigEndian.Uint32(raw), Base64: b64}, nil
}

// AddSignatures returns the signed note msg with the signature lines added
// after its own (a checkpoint "with cosignatures").
func AddSignatures(msg []byte, lines ...string) []byte {
	out := bytes.Clone(msg)
	for _, l := range lines {
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}

// WitnessPolicy is what a client requires of a checkpoint: at least Quorum
// of Witnesses must have cosigned it, each no longer than MaxAge ago (0:
// any age) and not more than MaxSkew in the future.
type WitnessPolicy struct {
	Witnesses []*CosignatureVerifier
	Quorum    int
	MaxAge    time.Duration
	MaxSkew   time.Duration // 0: DefaultCosignatureSkew
}

// DefaultCosignatureSkew is how far in the future a cosignature's time may
// lie (the witness's clock ahead of the client's).
const DefaultCosignatureSkew = 5 * time.Minute

// NewWitnessPolicy parses the witnesses' verifier keys. A quorum above the
// number of witnesses, a negative one, or two keys of one name are
// refused.
func NewWitnessPolicy(vkeys []string, quorum int, maxAge time.Duration) (*WitnessPolicy, error) {
	p := &WitnessPolicy{Quorum: quorum, MaxAge: maxAge}
	seen := map[string]bool{}
	for _, k := range vkeys {
		v, err := NewCosignatureVerifier(k)
		if err != nil {
			return nil, err
		}
		if seen[v.name] {
			return nil, fmt.Errorf("%w: witness %s listed twice", ErrCosignerKey, v.name)
		}
		seen[v.name] = true
		p.Witnesses = append(p.Witnesses, v)
	}
	if quorum < 0 || quorum > len(p.Witnesses) {
		return nil, fmt.Errorf("transparency: witness quorum %d must be 0 to the number of witnesses (%d)", quorum, len(p.Witnesses))
	}
	if maxAge < 0 {
		return nil, errors.New("transparency: negative witness max age")
	}
	return p, nil
}

// Cosigned is one valid cosignature found on a checkpoint.
type Cosigned struct {
	Witness string
	Time    time.Time
}

// Check verifies the signed checkpoint msg with the log key and counts the
// valid, fresh cosignatures of distinct policy witnesses among its other
// signatures. Fewer than the quorum is ErrQuorum (saying why each missing
// one did not count); signatures of keys the policy does not know are
// ignored. A nil policy or a zero quorum only checks the log signature.
func (p *WitnessPolicy) Check(msg []byte, log note.Verifier, now time.Time) (Checkpoint, []Cosigned, error) {
	c, n, err := Open(msg, log)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	got, err := p.checkNote(n, now)
	return c, got, err
}

// CheckCosigned is Check for a checkpoint whose log signature the caller
// has verified already: it counts the cosignatures on msg only.
func (p *WitnessPolicy) CheckCosigned(msg []byte, now time.Time) ([]Cosigned, error) {
	if len(msg) > MaxCheckpointBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrCheckpoint, MaxCheckpointBytes)
	}
	_, err := note.Open(msg, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return p.checkNote(unverified.Note, now)
}

func (p *WitnessPolicy) checkNote(n *note.Note, now time.Time) ([]Cosigned, error) {
	if p == nil || p.Quorum == 0 {
		return nil, nil
	}
	skew := p.MaxSkew
	if skew == 0 {
		skew = DefaultCosignatureSkew
	}
	var got []Cosigned
	var why []string
	for _, w := range p.Witnesses {
		reason := "no cosignature"
		for _, s := range n.UnverifiedSigs {
			if s.Name != w.name || s.Hash != w.id {
				continue
			}
			t, err := w.Verify([]byte(n.Text), s)
			switch {
			case err != nil:
				reason = "bad signature"
			case t.After(now.Add(skew)):
				reason = "time in the future"
			case p.MaxAge > 0 && now.Sub(t) > p.MaxAge:
				reason = fmt.Sprintf("cosigned %s ago, more than %s", now.Sub(t).Truncate(time.Second), p.MaxAge)
			default:
				reason = ""
				got = append(got, Cosigned{Witness: w.name, Time: t})
			}
			if reason == "" {
				break
			}
		}
		if reason != "" {
			why = append(why, w.name+": "+reason)
		}
	}
	if len(got) < p.Quorum {
		return got, fmt.Errorf("%w: %d of %d required (%s)", ErrQuorum, len(got), p.Quorum, strings.Join(why, "; "))
	}
	return got, nil
}
