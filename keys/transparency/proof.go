package transparency

import (
	"encoding/base64"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// EncodeHashes returns the hashes of a proof in standard base64, the form
// the HTTP routes and the "log" attachment use.
func EncodeHashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// DecodeHashes parses proof hashes in standard base64.
func DecodeHashes(ss []string) ([]tlog.Hash, error) {
	if len(ss) > MaxProofHashes {
		return nil, fmt.Errorf("%w: more than %d hashes", ErrProofEncoded, MaxProofHashes)
	}
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != len(out[i]) {
			return nil, fmt.Errorf("%w: hash %d is not 32 bytes in standard base64", ErrProofEncoded, i)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// VerifyInclusion checks that the entry data is leaf index of the tree
// that c commits to, by the RFC 6962 audit path proof.
func VerifyInclusion(c Checkpoint, index int64, data []byte, proof []tlog.Hash) error {
	if index < 0 || index >= c.Size {
		return fmt.Errorf("%w: index %d is outside a tree of size %d", ErrInclusion, index, c.Size)
	}
	if err := tlog.CheckRecord(tlog.RecordProof(proof), c.Size, c.Hash, index, LeafHash(data)); err != nil {
		return fmt.Errorf("%w: %v", ErrInclusion, err)
	}
	return nil
}

// VerifyConsistency checks that the tree of newer extends the tree of
// older, by the RFC 6962 consistency proof. Two checkpoints of one size
// are consistent only if their hashes are equal.
func VerifyConsistency(older, newer Checkpoint, proof []tlog.Hash) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: origins %q and %q differ", ErrConsistency, older.Origin, newer.Origin)
	}
	if older.Size > newer.Size {
		return fmt.Errorf("%w: size %d is older than %d", ErrConsistency, newer.Size, older.Size)
	}
	if older.Size == newer.Size {
		if older.Hash != newer.Hash || len(proof) != 0 {
			return fmt.Errorf("%w: two different trees of size %d", ErrConsistency, older.Size)
		}
		return nil
	}
	if older.Size == 0 {
		return nil // every tree extends the empty one
	}
	if err := tlog.CheckTree(tlog.TreeProof(proof), newer.Size, newer.Hash, older.Size, older.Hash); err != nil {
		return fmt.Errorf("%w: %v", ErrConsistency, err)
	}
	return nil
}
