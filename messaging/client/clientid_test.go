package client

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

var clientIDForm = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestClientIDsFollowTheirMessagesTime: the client ids of messages made
// one after the other sort in the order they were made, which is what
// puts the server's idempotency rows of one commit on the same pages.
func TestClientIDsFollowTheirMessagesTime(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)
	prev := ""
	for i := range 2000 {
		id := newMessageIDAt(t0.Add(time.Duration(i) * time.Millisecond))
		if _, err := kind.New(id, t0, &kind.TextBody{Text: "x"}); err != nil {
			t.Fatalf("NewMessageID %q is not a valid message id: %v", id, err)
		}
		c := SendClientID(id)
		if !clientIDForm.MatchString(c) {
			t.Fatalf("client id %q of %q: want 32 lowercase hex digits", c, id)
		}
		if c <= prev {
			t.Fatalf("client id %q of the message made 1 ms after the one with %q sorts before it", c, prev)
		}
		prev = c
	}
	id := newMessageIDAt(t0)
	if got, want := SendClientID(id)[:12], "01a2475ce500"; got != want {
		t.Errorf("time digits %q, want %q (Unix ms 1796493600000 in hex)", got, want)
	}
	if SendClientID(id) != SendClientID(id) {
		t.Error("the same message id gave two client ids: a retry would be stored twice")
	}
	if a, b := newMessageIDAt(t0), newMessageIDAt(t0); a == b || SendClientID(a) == SendClientID(b) {
		t.Errorf("two messages made in the same millisecond share an id or a client id: %q, %q", a, b)
	}
}

// TestOtherMessageIDsKeepTheirClientIDs: ids the SDK did not make with
// NewMessageID — a profile's, an application's, one from before the time
// was in it — keep the client id earlier SDKs sent them under, so a retry
// across an upgrade is still stored once.
func TestOtherMessageIDsKeepTheirClientIDs(t *testing.T) {
	for _, id := range []string{
		"profile.3.0123456789abcdef01234567",
		"m_" + mailbox.NewEnvelopeID(),   // random, before the time led
		"m_019aef7f2e0Gabcdefghijklmnop", // not hex where the time goes
		"m_019aef7f2e00abcdefghijklmno",  // one character short
		"cli-abc",
	} {
		h := sha256.Sum256([]byte(id))
		if got, want := SendClientID(id), hex.EncodeToString(h[:16]); got != want {
			t.Errorf("SendClientID(%q) = %q, want %q", id, got, want)
		}
	}
}

func FuzzSendClientID(f *testing.F) {
	f.Add("m_01a2475ce500abcdefghijklmnop")
	f.Add("profile.1.x")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		c := SendClientID(id)
		if !clientIDForm.MatchString(c) {
			t.Fatalf("SendClientID(%q) = %q: want 32 lowercase hex digits", id, c)
		}
		if c != SendClientID(id) {
			t.Fatalf("SendClientID(%q) is not stable", id)
		}
	})
}
