package messaging

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// An announcement is what an organisation's agent posts to the
// organisation's followers: a compact JWS (identity/orgsig) of media type
// TypeAnnouncement, signed by the agent's device key, whose header carries
// the device, membership and organisation certificates. It is signed, not
// encrypted: the server stores and reads its text, which is meant for the
// public (a council's notice). docs/api-messaging.md, "Broadcasts",
// specifies it.

// TypeAnnouncement is the JWS "typ" of an announcement.
const TypeAnnouncement = "kanal-announcement+jws"

// Limits of an announcement.
const (
	MaxAnnouncementText  = 4000     // bytes of UTF-8 text
	MaxAnnouncementBytes = 16 << 10 // the whole JWS, certificates included
	// AnnouncementSkew is how far an announcement's sent_at may be from
	// the server's clock when it is posted: an agent cannot post one
	// dated to a time it was still (or already) a member.
	AnnouncementSkew = 5 * time.Minute
)

// ErrBadAnnouncement: an announcement that does not parse, verify or
// match where it is posted.
var ErrBadAnnouncement = errors.New("messaging: bad announcement")

// Announcement is the signed payload, exactly these members.
type Announcement struct {
	Version int       `json:"v"`       // 1
	Org     string    `json:"org"`     // the organisation it speaks for
	ID      string    `json:"id"`      // the agent's id for it, 1..64 of [A-Za-z0-9_-]
	SentAt  time.Time `json:"sent_at"` // RFC 3339, UTC; the certificates must be valid then
	Text    string    `json:"text"`    // 1..MaxAnnouncementText bytes of UTF-8
}

// BroadcastConversation is the conversation id of an organisation's
// broadcast: "b_" and the first 32 hex digits of SHA-256 over
// "broadcast", a NUL byte and the organisation id.
func BroadcastConversation(orgID string) string {
	h := sha256.Sum256([]byte("broadcast\x00" + orgID))
	return "b_" + hex.EncodeToString(h[:])[:32]
}

func (a *Announcement) check() error {
	switch {
	case a.Version != 1:
		return fmt.Errorf("%w: v must be 1", ErrBadAnnouncement)
	case a.Org == "" || len(a.Org) > 64:
		return fmt.Errorf("%w: org: 1..64 characters", ErrBadAnnouncement)
	case !mailbox.ValidDeviceID(a.ID):
		return fmt.Errorf("%w: id must be 1..64 characters of [A-Za-z0-9_-]", ErrBadAnnouncement)
	case a.SentAt.IsZero() || a.SentAt.Location() != time.UTC:
		return fmt.Errorf("%w: sent_at must be a UTC time", ErrBadAnnouncement)
	case a.Text == "" || len(a.Text) > MaxAnnouncementText || !utf8.ValidString(a.Text):
		return fmt.Errorf("%w: text must be 1..%d bytes of UTF-8", ErrBadAnnouncement, MaxAnnouncementText)
	}
	return nil
}

// SignAnnouncement signs a as the device m, a member of a.Org, and
// returns the compact JWS. roots are the deployment's CA.
func SignAnnouncement(m orgsig.Member, roots *x509.CertPool, a Announcement) (string, error) {
	a.SentAt = a.SentAt.UTC().Truncate(time.Millisecond)
	if err := a.check(); err != nil {
		return "", err
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	jws, mem, err := orgsig.SignMember(m, roots, a.SentAt, TypeAnnouncement, payload)
	if err != nil {
		return "", fmt.Errorf("messaging.announce: %w", err)
	}
	if mem.OrgID != a.Org {
		return "", fmt.Errorf("%w: the membership is of %s, the announcement names %s", ErrBadAnnouncement, mem.OrgID, a.Org)
	}
	return jws, nil
}

// VerifiedAnnouncement is an announcement whose signature and
// certificates checked out.
type VerifiedAnnouncement struct {
	Announcement
	Signer     ca.DeviceIdentity
	Membership ca.Membership
	Leaf       []byte // the signing device's DER certificate
}

// VerifyAnnouncement checks jws offline against roots: the JWS (typ, one
// encoding, the signature by the device certificate's key), the device
// and membership certificates valid at sent_at and naming one device and
// key, the membership of the organisation the payload names, and the
// payload (exactly the members of Announcement, each by its rule).
func VerifyAnnouncement(jws string, roots *x509.CertPool) (*VerifiedAnnouncement, error) {
	var a Announcement
	s, err := orgsig.VerifyMember(jws, MaxAnnouncementBytes, TypeAnnouncement, roots, func(p []byte) (time.Time, error) {
		if err := orgsig.DecodeStrict(p, &a); err != nil {
			return time.Time{}, err
		}
		return a.SentAt, a.check()
	})
	if err != nil {
		if errors.Is(err, ErrBadAnnouncement) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrBadAnnouncement, err)
	}
	if s.Membership.OrgID != a.Org {
		return nil, fmt.Errorf("%w: signed by a member of %s, for %s", ErrBadAnnouncement, s.Membership.OrgID, a.Org)
	}
	return &VerifiedAnnouncement{Announcement: a, Signer: s.Device, Membership: s.Membership, Leaf: s.Leaf}, nil
}
