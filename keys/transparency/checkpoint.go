package transparency

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors of checkpoints and proofs. Returned errors wrap one of them.
var (
	ErrCheckpoint   = errors.New("transparency: invalid checkpoint")
	ErrSignature    = errors.New("transparency: checkpoint not signed by the log key")
	ErrInclusion    = errors.New("transparency: inclusion proof does not verify")
	ErrConsistency  = errors.New("transparency: checkpoints are not consistent")
	ErrProofEncoded = errors.New("transparency: malformed proof")
)

// Checkpoint is the body of a signed checkpoint (C2SP tlog-checkpoint):
// the log's origin, its size and the root hash of the tree of that size.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// Tree returns the tlog form of c.
func (c Checkpoint) Tree() tlog.Tree { return tlog.Tree{N: c.Size, Hash: c.Hash} }

// Marshal returns the note text c signs: "<origin>\n<size>\n<base64 root>\n".
func (c Checkpoint) Marshal() ([]byte, error) {
	if !validOrigin(c.Origin) {
		return nil, fmt.Errorf("%w: origin must be 1 to %d printable ASCII bytes without '+' or spaces at its ends", ErrCheckpoint, MaxOriginBytes)
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("%w: negative size", ErrCheckpoint)
	}
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:])), nil
}

// ParseCheckpoint parses a checkpoint body strictly: exactly the three
// lines, a size without leading zeros, a 32-byte hash in standard base64.
// Extension lines are refused: kanal's checkpoints carry none.
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return c, fmt.Errorf("%w: want exactly three lines (origin, size, root hash)", ErrCheckpoint)
	}
	c.Origin = lines[0]
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return c, fmt.Errorf("%w: size is not a decimal number", ErrCheckpoint)
	}
	c.Size = n
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != len(c.Hash) {
		return c, fmt.Errorf("%w: root hash is not 32 bytes in standard base64", ErrCheckpoint)
	}
	copy(c.Hash[:], h)
	if back, err := c.Marshal(); err != nil || string(back) != text {
		return c, fmt.Errorf("%w: origin is not valid", ErrCheckpoint)
	}
	return c, nil
}

func validOrigin(s string) bool {
	if len(s) == 0 || len(s) > MaxOriginBytes || strings.TrimSpace(s) != s || strings.Contains(s, "+") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// GenerateKey returns a new Ed25519 note key pair named name: the signer
// key ("PRIVATE+KEY+name+hash+base64", secret) and the verifier key
// ("name+hash+base64", published).
func GenerateKey(rand io.Reader, name string) (signer, verifier string, err error) {
	return note.GenerateKey(rand, name)
}

// Sign signs c with the log's note signer and returns the note text.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	body, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(body)}, s)
}

// Open checks that msg is a checkpoint note signed by the log key v and
// parses it. Signatures by other keys (witness cosignatures) are kept in
// the returned note's UnverifiedSigs for whoever checks them.
func Open(msg []byte, v note.Verifier) (Checkpoint, *note.Note, error) {
	if len(msg) > MaxCheckpointBytes {
		return Checkpoint{}, nil, fmt.Errorf("%w: longer than %d bytes", ErrCheckpoint, MaxCheckpointBytes)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unknown) || errors.As(err, &invalid) {
			return Checkpoint{}, nil, fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return Checkpoint{}, nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, nil, fmt.Errorf("%w: origin %q is not the log key's name %q", ErrCheckpoint, c.Origin, v.Name())
	}
	return c, n, nil
}

// NewVerifier parses a log's verifier key ("name+hash+base64").
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("transparency: log key: %w", err)
	}
	return v, nil
}
