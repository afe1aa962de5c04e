package messaging

import (
	"time"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys"

	"github.com/kanal-server/kanal/keys/transparency"
)

// This file is the HTTP contract of the prekey directory. messaging/client
// imports these types, so they only change compatibly.
//
// Conventions: keys travel in their prefixed text forms (keys'
// MarshalText: "kanal-idpub:…", "kanal-spk:…", …, each carrying its key id);
// signatures as unpadded base64url, as in keys.PrekeyBundle's JSON form;
// certificates as PEM. Bodies are decoded strictly.

// Problem types of the prekey directory. Clients branch on these.
var (
	TypeInvalidKey       = web.NewType("invalid-prekey")         // a key that does not decode, of the wrong kind or length
	TypeBadSignature     = web.NewType("bad-prekey-signature")   // a prekey signature that the identity key did not make
	TypeBadBinding       = web.NewType("bad-identity-binding")   // a binding the device certificate's key did not make
	TypeDuplicateKeyID   = web.NewType("duplicate-prekey-id")    // a key id used twice in a batch or already stored
	TypeTooManyPrekeys   = web.NewType("too-many-prekeys")       // the upload would exceed MaxStoredPrekeys
	TypeNoIdentity       = web.NewType("identity-not-published") // one-time keys before PUT /v1/prekeys
	TypeUnknownRecipient = web.NewType("unknown-recipient")      // claim for an unknown account or organisation
	// Also used: web.TypeInvalidJSON, web.TypeTooLarge (a batch over
	// MaxPrekeyBatch), web.TypeValidation, web.TypeRateLimited (with
	// Retry-After), identity's invalid-token and device-revoked.
)

// PublishRequest is the body of PUT /v1/prekeys (session of the device).
// It replaces the device's identity, signed prekey and last-resort prekey.
// Publishing a different identity key deletes the device's unused one-time
// prekeys: they belong to the old identity.
type PublishRequest struct {
	Identity        string `json:"identity"`                  // keys.IdentityPublic text
	IdentityBinding string `json:"identity_binding"`          // keys.SignIdentity by the device key
	SignedPrekey    string `json:"signed_prekey"`             // keys.SignedPrekeyPublic text
	SignedPrekeySig string `json:"signed_prekey_sig"`         // by the identity key
	LastResort      string `json:"pq_last_resort_prekey"`     // keys.PQPrekeyPublic text, last-resort flag set
	LastResortSig   string `json:"pq_last_resort_prekey_sig"` // by the identity key
}

// PrekeyBatch is the body of POST /v1/prekeys/one-time (session of the
// device): up to MaxPrekeyBatch one-time keys of each kind.
type PrekeyBatch struct {
	OneTimePrekeys []string      `json:"one_time_prekeys"` // keys.OneTimePrekeyPublic text
	PQPrekeys      []SignedPQKey `json:"pq_prekeys"`
}

// SignedPQKey is a one-time ML-KEM-768 prekey and its signature by the
// identity key.
type SignedPQKey struct {
	Key string `json:"key"` // keys.PQPrekeyPublic text, last-resort flag clear
	Sig string `json:"sig"`
}

// PrekeyStatus answers GET /v1/prekeys/status and both uploads: what the
// directory holds for the calling device.
type PrekeyStatus struct {
	Published      bool       `json:"published"` // identity, signed and last-resort prekeys are present
	SignedPrekeyID uint32     `json:"signed_prekey_id,omitempty"`
	LastResortID   uint32     `json:"pq_last_resort_prekey_id,omitempty"`
	UpdatedAt      *time.Time `json:"updated_at,omitempty"` // of the identity and signed prekeys
	OneTimePrekeys int        `json:"one_time_prekeys"`
	PQPrekeys      int        `json:"pq_prekeys"`
	// Low is set when either count is below LowPrekeys (or nothing is
	// published): the device should upload another batch.
	Low bool `json:"low"`
}

// ClaimRequest is the body of POST /v1/prekeys/claim (any session).
// Exactly one of AccountID and OrgID is set. Devices, if not empty,
// narrows the claim to those of the account's (or organisation's agent)
// devices: a client that already has sessions with the others does not
// use up their one-time prekeys.
//
// A claim covers at most MaxClaimDevices devices, in device id order:
// After, if set, is the Next of the previous page, and the claim covers
// the devices with ids above it. Devices holds at most MaxClaimFilter ids.
type ClaimRequest struct {
	AccountID string   `json:"account_id,omitempty"`
	OrgID     string   `json:"org_id,omitempty"`
	Devices   []string `json:"devices,omitempty"`
	After     string   `json:"after,omitempty"`
}

// ClaimResponse carries one bundle per active device that has published
// keys. The caller's own device is never included.
type ClaimResponse struct {
	// OrgCertificate is the organisation's certificate (PEM) for an org
	// claim, through which the membership certificates chain to the CA.
	OrgCertificate string          `json:"org_certificate,omitempty"`
	Bundles        []ClaimedBundle `json:"bundles"`
	// Unpublished lists active devices that have not published keys yet.
	Unpublished []string `json:"unpublished"`
	// Next is set when devices remain beyond this page: claim again with
	// After set to it. It is the id of the page's last device.
	Next string `json:"next,omitempty"`
}

// ClaimedBundle is one device's bundle with what a client needs to check it
// without trusting the server: the device certificate, the identity binding
// and, for an organisation's agents, the membership certificate.
type ClaimedBundle struct {
	AccountID             string            `json:"account_id"`
	Certificate           string            `json:"certificate"` // PEM device certificate
	MembershipCertificate string            `json:"membership_certificate,omitempty"`
	IdentityBinding       string            `json:"identity_binding"`
	Bundle                keys.PrekeyBundle `json:"bundle"`
	// Log proves the device's identity-key entry in the transparency log
	// (account, device, certificate fingerprint, identity key), and
	// MembershipLog, for an organisation's agent, its membership entry
	// (docs/transparency.md). A client refuses a bundle without them.
	Log           *transparency.Attachment `json:"log,omitempty"`
	MembershipLog *transparency.Attachment `json:"membership_log,omitempty"`
}
