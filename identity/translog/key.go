package translog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/kanal-server/kanal/keys/transparency"
)

// DefaultOrigin is the log's origin when the deployment names none:
// "kanal/" and the first 16 hex digits of the SHA-256 of the root CA
// certificate's DER.
func DefaultOrigin(rootCertDER []byte) string {
	sum := sha256.Sum256(rootCertDER)
	return "kanal/" + hex.EncodeToString(sum[:])[:16]
}

// LoadOrCreateKey reads the log's note signer key from path, creating it
// (mode 0600) with a new Ed25519 key named origin if the file does not
// exist. Nodes starting at once agree: the file is written whole under a
// temporary name and linked into place, so exactly one key wins and the
// others read it. A key named other than origin is an error: checkpoints
// name the log by its origin, and clients check the key's name against it.
func LoadOrCreateKey(path, origin string, rand io.Reader) (note.Signer, string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, _, gerr := transparency.GenerateKey(rand, origin)
		if gerr != nil {
			return nil, "", fmt.Errorf("log key: %w", gerr)
		}
		tmp, terr := os.CreateTemp(filepath.Dir(path), ".log.key-*")
		if terr != nil {
			return nil, "", fmt.Errorf("log key: %w", terr)
		}
		defer os.Remove(tmp.Name())
		_, werr := tmp.WriteString(skey + "\n")
		if werr == nil {
			werr = tmp.Chmod(0o600)
		}
		if werr == nil {
			werr = tmp.Sync()
		}
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, "", fmt.Errorf("log key: %w", werr)
		}
		if lerr := os.Link(tmp.Name(), path); lerr != nil && !errors.Is(lerr, fs.ErrExist) {
			return nil, "", fmt.Errorf("log key: %w", lerr)
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("log key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("log key %s: mode %v lets others read it; chmod 600", path, st.Mode().Perm())
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: not a note signer key: %w", path, err)
	}
	if s.Name() != origin {
		return nil, "", fmt.Errorf("log key %s is named %q, but the log's origin is %q", path, s.Name(), origin)
	}
	vkey, err := verifierKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: %w", path, err)
	}
	return s, vkey, nil
}

// verifierKey derives the verifier key "name+hash+base64" from a signer
// key "PRIVATE+KEY+name+hash+base64", whose key part is the algorithm
// byte (1, Ed25519) and the 32-byte seed.
func verifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}
