package mailbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"testing"
)

// busTagFresh is the tag as docs/api-messaging.md specifies it, from an
// HMAC made for this message alone.
func busTagFresh(key []byte, purpose, subject string, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\x00%s\x00", purpose, subject)
	m.Write(payload)
	return m.Sum(nil)
}

// The pooled HMAC states give the specified tag whatever came before:
// alternating keys (tests run several hubs in one process) never lend one
// key's state to another.
func TestBusTagPooledIsTheSpecifiedTag(t *testing.T) {
	keys := [][]byte{[]byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210"), make([]byte, 64)}
	for i := range 200 {
		key := keys[i%len(keys)]
		payload := []byte(fmt.Sprint("payload ", i))
		got := busTag(key, purposeWake, subjectWake+"dev", payload)
		if want := busTagFresh(key, purposeWake, subjectWake+"dev", payload); !hmac.Equal(got, want) {
			t.Fatalf("message %d: tag %x, want %x", i, got, want)
		}
	}
}

func BenchmarkBusTag(b *testing.B) {
	key := []byte("0123456789abcdef0123456789abcdef")
	payload := make([]byte, 600)
	b.ReportAllocs()
	for b.Loop() {
		busTag(key, purposeWake, subjectWake+"d_0123456789abcdefghij", payload)
	}
}
