package client

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"
)

// Message ids and the client ids of their sends.
//
// A send's client_id makes it idempotent: the server keeps (client_id,
// sending device) for a day and answers a second send with the same pair
// with the first one's answer. The SDK derives it from the message id
// alone (SendClientID), so the same message sent again, by a retry or
// after a restart, has the same client_id.
//
// On SQLite the server keys those rows client id first. Client ids that
// begin with the time put a group commit's rows next to each other at the
// end of the index, where random ones put each on a page of its own
// (docs/benchmarks.md, "Idempotency rows keyed client id first on
// SQLite"). So ids from NewMessageID carry the time they were made, and
// their client ids begin with it:
//
//	message id  m_<12 hex digits: Unix ms><16 base64url characters: 96 random bits>
//	client id   <the same 12 hex digits><20 hex digits: SHA-256(message id)[:10]>
//
// Any other message id (the profile's, one an application made) has the
// client id of earlier SDKs, the first 16 bytes of SHA-256(message id) in
// hex. Both are 32 characters.

const (
	messageIDPrefix = "m_"
	timedIDDigits   = 12 // Unix milliseconds in hex: 48 bits, to the year 10889
	randomIDChars   = 16 // 96 bits in base64url
)

// NewMessageID returns a new message id for kind.New: "m_", the time it
// was made as 12 lowercase hex digits of Unix milliseconds, and 96 random
// bits in base64url.
func NewMessageID() string { return newMessageIDAt(time.Now()) }

func newMessageIDAt(t time.Time) string {
	var r [12]byte
	_, _ = rand.Read(r[:])
	b := make([]byte, 0, len(messageIDPrefix)+timedIDDigits+randomIDChars)
	b = append(b, messageIDPrefix...)
	b = appendTimeHex(b, t)
	return string(base64.RawURLEncoding.AppendEncode(b, r[:]))
}

// appendTimeHex appends t as 12 lowercase hex digits of Unix milliseconds,
// 0 before 1970.
func appendTimeHex(b []byte, t time.Time) []byte {
	ms := max(t.UnixMilli(), 0)
	const digits = "0123456789abcdef"
	for i := timedIDDigits - 1; i >= 0; i-- {
		b = append(b, digits[(ms>>(4*i))&0xf])
	}
	return b
}

// SendClientID is the client_id the SDK sends the message with id under:
// the time of an id from NewMessageID followed by 80 bits of the id's
// hash, or 128 bits of the hash for any other id.
func SendClientID(id string) string {
	h := sha256.Sum256([]byte(id))
	if t, ok := messageIDTime(id); ok {
		return t + hex.EncodeToString(h[:10])
	}
	return hex.EncodeToString(h[:16])
}

// messageIDTime returns the time digits of an id of NewMessageID's form.
func messageIDTime(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, messageIDPrefix)
	if !ok || len(rest) != timedIDDigits+randomIDChars {
		return "", false
	}
	for i := range timedIDDigits {
		if c := rest[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return rest[:timedIDDigits], true
}
