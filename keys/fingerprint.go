package keys

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"strings"
)

// Safety numbers let two people compare, out of band, that each holds the
// other's real identity key. The construction follows Signal's numeric
// fingerprint: per party, SHA-512 iterated over version || key || stable id,
// the first 30 bytes rendered as six 5-digit groups; the two halves are
// sorted so both sides see the same 60 digits.

const (
	// fingerprintVersion distinguishes kanal's fingerprints (which hash both
	// identity keys in kanal's encoding) from Signal's version 0.
	fingerprintVersion = 1
	// fingerprintIterations is Signal's iteration count; it makes finding a
	// second key with a colliding number expensive.
	fingerprintIterations = 5200
)

// SafetyNumber is the 60-digit number two parties compare.
type SafetyNumber struct {
	digits string
}

// NewSafetyNumber computes the safety number between local and remote. The
// stable ids are the parties' account ids; the number changes when either
// identity key changes. The result is the same on both sides.
func NewSafetyNumber(localID string, local IdentityPublic, remoteID string, remote IdentityPublic) (SafetyNumber, error) {
	if local.IsZero() || remote.IsZero() {
		return SafetyNumber{}, fmt.Errorf("keys.NewSafetyNumber: %w", ErrInvalidKey)
	}
	a := displayableFingerprint(local, localID)
	b := displayableFingerprint(remote, remoteID)
	// Sorting instead of "local first" is what makes the number symmetric.
	if a > b {
		a, b = b, a
	}
	return SafetyNumber{digits: a + b}, nil
}

func displayableFingerprint(id IdentityPublic, stableID string) string {
	key := id.bytes()
	var in []byte
	in = binary.BigEndian.AppendUint16(in, fingerprintVersion)
	in = append(in, key...)
	in = append(in, stableID...)
	h := sha512.Sum512(in)
	buf := make([]byte, 0, sha512.Size+len(key))
	for range fingerprintIterations {
		buf = append(buf[:0], h[:]...)
		buf = append(buf, key...)
		h = sha512.Sum512(buf)
	}
	var sb strings.Builder
	for i := range 6 {
		chunk := h[i*5 : i*5+5]
		v := uint64(chunk[0])<<32 | uint64(chunk[1])<<24 | uint64(chunk[2])<<16 | uint64(chunk[3])<<8 | uint64(chunk[4])
		fmt.Fprintf(&sb, "%05d", v%100000)
	}
	return sb.String()
}

// Digits returns the 60 digits without spaces.
func (s SafetyNumber) Digits() string { return s.digits }

// String renders the number as twelve groups of five digits.
func (s SafetyNumber) String() string {
	var groups []string
	for i := 0; i+5 <= len(s.digits); i += 5 {
		groups = append(groups, s.digits[i:i+5])
	}
	return strings.Join(groups, " ")
}

// Equal compares two safety numbers in constant time, for example one scanned
// from the other party's screen.
func (s SafetyNumber) Equal(o SafetyNumber) bool {
	return len(s.digits) == 60 && subtle.ConstantTimeCompare([]byte(s.digits), []byte(o.digits)) == 1
}
