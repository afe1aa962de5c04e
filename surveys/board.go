package surveys

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
)

// The public bulletin board.
//
// Every accepted ballot becomes one entry of its survey's board. An entry
// commits to the one before it: its hash covers the survey id, its
// sequence number, the previous entry's hash and everything the entry
// holds, so changing, dropping or reordering any entry changes every hash
// after it. The first entry's predecessor is the survey's genesis hash.
// The server signs the head (length and last hash) with the deployment
// notary whenever it serves a page; a voter keeps its entry's hash as a
// receipt and later checks that the signed board holds it.

// Entry is one board entry.
type Entry struct {
	Seq  int64  `json:"seq"` // 1, 2, …
	Prev []byte `json:"prev"`
	// Nullifier is Nullifier(TokenMessage) for anonymous ballots and
	// NamedNullifier(Voter) for named ones.
	Nullifier []byte `json:"nullifier"`
	// TokenMessage and TokenSignature: anonymous ballots only; anyone
	// checks them against the definition's token key.
	TokenMessage   []byte `json:"token_message,omitempty"`
	TokenSignature []byte `json:"token_signature,omitempty"`
	// Voter is the account that cast a named ballot.
	Voter      string `json:"voter,omitempty"`
	Ciphertext []byte `json:"ciphertext"`
	Hash       []byte `json:"hash"`
}

// Genesis returns the hash the first entry of a survey's board follows.
func Genesis(surveyID string) []byte {
	h := sha256.Sum256([]byte("kanal survey board v1\x00" + surveyID))
	return h[:]
}

// ComputeHash returns the hash an entry must carry.
func (e *Entry) ComputeHash(surveyID string) []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("kanal survey board entry v1"))
	field([]byte(surveyID))
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(e.Seq))
	field(seq[:])
	field(e.Prev)
	field(e.Nullifier)
	field(e.TokenMessage)
	field(e.TokenSignature)
	field([]byte(e.Voter))
	field(e.Ciphertext)
	return h.Sum(nil)
}

// NamedNullifier is the nullifier of a named ballot: one per voter.
func NamedNullifier(surveyID, account string) []byte {
	return Nullifier([]byte("named\x00" + surveyID + "\x00" + account))
}

// Head is the state of a board at one moment.
type Head struct {
	SurveyID string    `json:"survey_id"`
	Length   int64     `json:"length"`
	Hash     []byte    `json:"hash"`
	At       time.Time `json:"at"`
}

// SignedHead is a head signed by the deployment notary.
type SignedHead struct {
	Head      json.RawMessage `json:"head"`
	Signature []byte          `json:"signature"`
	Notary    []byte          `json:"notary_certificate"`
}

// Notary purposes of kanal's survey statements.
const (
	PurposeHead   = "surveys.board-head"
	PurposeResult = "surveys.result"
)

// VerifyHead checks a signed head against the deployment CA.
func VerifyHead(s *SignedHead, roots *x509.CertPool) (*Head, error) {
	var h Head
	if err := strictJSON(s.Head, &h); err != nil {
		return nil, fmt.Errorf("%w: head: %v", ErrBadBoard, err)
	}
	if err := ca.VerifyNotarized(s.Notary, roots, h.At, PurposeHead, s.Head, s.Signature); err != nil {
		return nil, fmt.Errorf("%w: head signature: %w", ErrBadBoard, err)
	}
	return &h, nil
}

// CheckBoard verifies a whole board against a definition and a head: the
// chain from genesis to the head, every hash, consecutive sequence
// numbers, and for each entry what the mode requires (a token of this
// survey that verifies under its key and a matching, unused nullifier; or
// a voter named at most once). It is what anyone recounting runs first.
func CheckBoard(d *Definition, entries []Entry, head *Head) error {
	var pub *rsa.PublicKey
	if d.Mode == ModeAnonymous {
		var err error
		if pub, err = ParseTokenKey(d.TokenKey); err != nil {
			return err
		}
	}
	if head.SurveyID != d.SurveyID || head.Length != int64(len(entries)) {
		return fmt.Errorf("%w: head names %d entries of %s, board has %d", ErrBadBoard, head.Length, head.SurveyID, len(entries))
	}
	prev := Genesis(d.SurveyID)
	seen := make(map[string]bool, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.Seq != int64(i+1) {
			return fmt.Errorf("%w: entry %d has number %d", ErrBadBoard, i+1, e.Seq)
		}
		if !bytes.Equal(e.Prev, prev) {
			return fmt.Errorf("%w: entry %d does not follow entry %d", ErrBadBoard, e.Seq, e.Seq-1)
		}
		if subtle.ConstantTimeCompare(e.Hash, e.ComputeHash(d.SurveyID)) != 1 {
			return fmt.Errorf("%w: entry %d: hash does not match its contents", ErrBadBoard, e.Seq)
		}
		switch d.Mode {
		case ModeAnonymous:
			if e.Voter != "" {
				return fmt.Errorf("%w: entry %d names a voter in an anonymous survey", ErrBadBoard, e.Seq)
			}
			if err := VerifyToken(pub, d.SurveyID, &Token{Message: e.TokenMessage, Signature: e.TokenSignature}); err != nil {
				return fmt.Errorf("%w: entry %d: %w", ErrBadBoard, e.Seq, err)
			}
			if !bytes.Equal(e.Nullifier, Nullifier(e.TokenMessage)) {
				return fmt.Errorf("%w: entry %d: nullifier does not match its token", ErrBadBoard, e.Seq)
			}
		case ModeNamed:
			if len(e.TokenMessage) != 0 || len(e.TokenSignature) != 0 || !ca.ValidID(e.Voter) {
				return fmt.Errorf("%w: entry %d: a named entry carries a voter and no token", ErrBadBoard, e.Seq)
			}
			if !bytes.Equal(e.Nullifier, NamedNullifier(d.SurveyID, e.Voter)) {
				return fmt.Errorf("%w: entry %d: nullifier does not match its voter", ErrBadBoard, e.Seq)
			}
		}
		if seen[string(e.Nullifier)] {
			return fmt.Errorf("%w: entry %d: counted twice (nullifier seen before)", ErrBadBoard, e.Seq)
		}
		seen[string(e.Nullifier)] = true
		prev = e.Hash
	}
	if !bytes.Equal(prev, head.Hash) {
		return fmt.Errorf("%w: the board does not end at the signed head", ErrBadBoard)
	}
	return nil
}

// Receipt is what a voter keeps: where its ballot is on the board, signed
// by the deployment notary so that the voter can show it to anyone.
type Receipt struct {
	SurveyID string    `json:"survey_id"`
	Seq      int64     `json:"seq"`
	Hash     []byte    `json:"hash"`
	At       time.Time `json:"at"`
	// Signature is the notary's (purpose surveys.receipt) over
	// ReceiptMessage; Notary its certificate (DER).
	Signature []byte `json:"signature"`
	Notary    []byte `json:"notary_certificate"`
}

// PurposeReceipt is the notary purpose of ballot receipts.
const PurposeReceipt = "surveys.receipt"

// ReceiptMessage is what the notary signs for a receipt:
//
//	"kanal survey receipt v1" 0x00 ‖ survey id ‖ 0x00 ‖ u64be(seq) ‖ u64be(len(hash)) ‖ hash ‖ u64be(at, Unix seconds)
func ReceiptMessage(r *Receipt) []byte {
	m := make([]byte, 0, 64+len(r.SurveyID)+len(r.Hash))
	m = append(m, "kanal survey receipt v1\x00"...)
	m = append(m, r.SurveyID...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint64(m, uint64(r.Seq))
	m = binary.BigEndian.AppendUint64(m, uint64(len(r.Hash)))
	m = append(m, r.Hash...)
	return binary.BigEndian.AppendUint64(m, uint64(r.At.Unix()))
}

// VerifyReceipt checks a receipt's notary signature against the
// deployment CA: kanald put this ballot at this place on this board.
func VerifyReceipt(r *Receipt, roots *x509.CertPool) error {
	if len(r.Signature) == 0 {
		return fmt.Errorf("%w: the receipt is not signed", ErrBadReceipt)
	}
	if err := ca.VerifyNotarized(r.Notary, roots, r.At, PurposeReceipt, ReceiptMessage(r), r.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrBadReceipt, err)
	}
	return nil
}

// FindReceipt reports whether a checked board holds the receipt's entry;
// a receipt the board does not hold is ErrBadReceipt (the board itself is
// fine: CheckBoard said so).
func FindReceipt(entries []Entry, r *Receipt) error {
	if r.Seq < 1 || r.Seq > int64(len(entries)) {
		return fmt.Errorf("%w: the board has no entry %d", ErrBadReceipt, r.Seq)
	}
	if subtle.ConstantTimeCompare(entries[r.Seq-1].Hash, r.Hash) != 1 {
		return fmt.Errorf("%w: entry %d is not the receipt's ballot", ErrBadReceipt, r.Seq)
	}
	return nil
}
