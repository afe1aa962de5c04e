// Package identity is kanal's identity service: accounts verified by e-mail,
// passwords, devices and their certificates from the deployment CA,
// sessions and their levels of assurance, organisations with members and
// roles, the operator, the audit log and the public directory. It also
// exports the authorization middleware (RequireSession, RequireOperator)
// and FromContext, through which every other domain learns who is calling.
package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/kanal-server/kanal/identity/oidc"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// This file is the HTTP contract of the identity service: the JSON bodies of
// every route, the problem types it answers with and the exact bytes a
// device signs to log in. The Go client (identity/client) and the CLI import
// these types, so they only ever change compatibly: fields are added, never
// renamed or removed. docs/api-identity.md describes the flow.
//
// Conventions: bodies are application/json, decoded strictly (unknown fields
// are rejected); binary values are base64 with the standard alphabet and
// padding; certificates and CRLs are PEM; times are RFC 3339 in UTC; levels
// of assurance are "low", "substantial" or "high". Bearer tokens travel in
// "Authorization: Bearer <token>".

// Levels of assurance as they appear in JSON.
const (
	LevelLow         = "low"
	LevelSubstantial = "substantial"
	LevelHigh        = "high"
)

// Device statuses as they appear in JSON.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired" // not revoked, but its certificate has expired
)

// Organisation kinds as they appear in JSON.
const (
	KindOffice   = "office"
	KindCouncil  = "council"
	KindMerchant = "merchant"
)

// Organisation roles. Every kind has owner, admin and agent; councils also
// have organiser, merchants also seller.
const (
	RoleOwner     = "owner"
	RoleAdmin     = "admin"
	RoleAgent     = "agent"
	RoleOrganiser = "organiser"
	RoleSeller    = "seller"
)

// IsAgentRole reports whether a member with role speaks and reads for the
// organisation in its conversations with citizens. Every role the
// deployment grants does — owners, admins and agents answer, a council's
// organisers send survey invitations, a merchant's sellers send offers —
// and the server addresses all their devices; a client encrypts to no
// member whose membership certificate names any other role.
func IsAgentRole(role string) bool {
	switch role {
	case RoleOwner, RoleAdmin, RoleAgent, RoleOrganiser, RoleSeller:
		return true
	}
	return false
}

// Problem types of the identity service. Clients branch on these.
var (
	TypeInvalidEmail       = web.NewType("invalid-email")
	TypeInvalidCode        = web.NewType("invalid-code")
	TypeInvalidToken       = web.NewType("invalid-token")        // missing, unknown or expired bearer token
	TypeSessionExpired     = web.NewType("session-expired")      // a session token that has expired
	TypeDeviceRevoked      = web.NewType("device-revoked")       // the session's or the named device is revoked
	TypeInvalidCredentials = web.NewType("invalid-credentials")  // wrong password, bad signature, unknown device
	TypeInvalidChallenge   = web.NewType("invalid-challenge")    // unknown, expired, used or foreign challenge
	TypeWeakPassword       = web.NewType("weak-password")        // too short or too long
	TypePasswordRequired   = web.NewType("password-required")    // current_password missing or wrong
	TypeInvalidCSR         = web.NewType("invalid-csr")          // unparsable CSR or bad signature
	TypeUnsupportedKey     = web.NewType("unsupported-key")      // a key other than ECDSA P-256 or Ed25519
	TypeTooManyDevices     = web.NewType("too-many-devices")     // the account has MaxDevices active devices
	TypeRefreshReused      = web.NewType("refresh-token-reused") // an old refresh token: the whole family is revoked
	TypeInvalidRole        = web.NewType("invalid-role")
	TypeTooManyMembers     = web.NewType("too-many-members") // the organisation has MaxOrgMembers members
	TypeInvalidOrg         = web.NewType("invalid-organisation")
	TypeNotVerified        = web.NewType("organisation-not-verified")
	TypeNotConfigured      = web.NewType("not-configured")    // e.g. eID (level high) without a provider
	TypeDeviceExpired      = web.NewType("device-expired")    // the device certificate has expired: enrol the device anew
	TypeInvalidKeyProof    = web.NewType("invalid-key-proof") // a renewal without a valid signature by the device's current key
	TypeEIDState           = web.NewType("eid-state")         // a callback whose state matches no eID login in progress
	TypeEIDPending         = web.NewType("eid-pending")       // the browser has not come back from the eID provider yet
	TypeEIDRejected        = web.NewType("eid-rejected")      // the provider's ID token failed a check (iss, aud, nonce, exp, signature)
	TypeEIDLevel           = web.NewType("eid-level")         // the eID login's acr is below the level asked for
	TypeEIDUnreachable     = web.NewType("eid-unreachable")   // the eID provider could not be reached
	TypeEIDBound           = web.NewType("eid-bound")         // the identity is linked to another account, or the account to another identity
	TypeEIDRequired        = web.NewType("eid-required")      // an unlink by an agent of an organisation that requires level high of its agents
	// Also used: web.TypeInvalidJSON, web.TypeTooLarge, web.TypeValidation,
	// web.TypeNotFound, web.TypeForbidden, web.TypeRateLimited (with
	// Retry-After), web.TypeInsufficientLevel, web.TypeConflict.
)

// POST /v1/signup
type SignupRequest struct {
	Email string `json:"email"`
}

// SignupResponse is always {"status":"code_sent"} with 202, whether or not
// the address already has an account.
type SignupResponse struct {
	Status string `json:"status"`
}

// SignupStatusCodeSent is the only SignupResponse.Status.
const SignupStatusCodeSent = "code_sent"

// POST /v1/signup/verify
type VerifyRequest struct {
	Email string `json:"email"`
	Code  string `json:"code"` // 8 decimal digits
}

// VerifyResponse carries a setup token: a bearer token good only for
// PUT /v1/account/password and the first POST /v1/devices.
type VerifyResponse struct {
	AccountID  string    `json:"account_id"`
	SetupToken string    `json:"setup_token"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// PUT /v1/account/password (setup token or session). CurrentPassword is
// required when the account already has a password and a session is used.
type PasswordRequest struct {
	Password        string `json:"password"`
	CurrentPassword string `json:"current_password,omitempty"`
}

// POST /v1/devices (setup token for the first device, or a substantial
// session). CSR is base64 (standard) of a DER PKCS#10 request signed by the
// device key: ECDSA P-256 or Ed25519. With a session, the session's device
// approves the new one with its key: ChallengeID names a challenge of
// purpose "approve" for the session's device, and Signature is that
// device's signature over ApproveMessage(ChallengeID, session's device id,
// nonce, CSR DER), encoded as LoginRequest documents.
type EnrollRequest struct {
	Name        string `json:"name"`
	CSR         string `json:"csr"`
	ChallengeID string `json:"challenge_id,omitempty"`
	Signature   string `json:"signature,omitempty"`
}

// EnrollResponse answers enrollment (201) and renewal (200).
type EnrollResponse struct {
	DeviceID    string `json:"device_id"`
	Certificate string `json:"certificate"` // PEM device certificate
	CA          string `json:"ca"`          // PEM deployment CA certificate (the root clients pin)
	Level       string `json:"level"`       // level written into the certificate
	// Intermediates are the PEM issuing intermediates (current first, then
	// retired) when the root is kept offline; absent when the root issues.
	// Clients check each against the root (ca.TrustPool).
	Intermediates []string `json:"intermediates,omitempty"`
}

// POST /v1/devices/{id}/renew (session of the device's account, and
// proof of the device's current key). CSR is the request for the new
// certificate, signed by the new key (which may be the current one).
// ChallengeID names a challenge of purpose "renew" for this device, and
// Signature is the current device key's signature over
// RenewMessage(ChallengeID, device id, challenge nonce, CSR DER), in the
// encoding LoginRequest documents. The new certificate's level is the
// session's (at most substantial); with the account's Password as well it
// is substantial.
type RenewRequest struct {
	CSR         string `json:"csr"`
	ChallengeID string `json:"challenge_id"`
	Signature   string `json:"signature"`
	Password    string `json:"password,omitempty"`
}

// GET /v1/devices (session).
type DeviceList struct {
	Devices []Device `json:"devices"`
}

// Device is one of the caller's own devices.
type Device struct {
	DeviceID  string     `json:"device_id"`
	Name      string     `json:"name"`
	Level     string     `json:"level"`
	Status    string     `json:"status"` // "active" or "revoked"
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"` // of the current certificate
	RevokedAt *time.Time `json:"revoked_at"` // null unless revoked
}

// POST /v1/sessions/challenge (no auth). Purpose is ChallengeLogin (the
// default when empty) or ChallengeRenew.
type ChallengeRequest struct {
	DeviceID string `json:"device_id"`
	Purpose  string `json:"purpose,omitempty"`
}

// Challenge purposes: a challenge is good only for what it was asked for.
const (
	ChallengeLogin   = "login"
	ChallengeRenew   = "renew"
	ChallengeApprove = "approve"
	ChallengeEID     = "eid"
)

// ChallengeResponse is single use, valid ChallengeLifetime, bound to the
// device and to its purpose.
type ChallengeResponse struct {
	ChallengeID string    `json:"challenge_id"`
	Nonce       string    `json:"nonce"` // base64 of 32 random bytes
	ExpiresAt   time.Time `json:"expires_at"`
}

// POST /v1/sessions (no auth). Signature is base64 of the device key's
// signature over LoginMessage(ChallengeID, DeviceID, Nonce): for ECDSA P-256
// an ASN.1 DER signature of the SHA-256 digest of the message, for Ed25519
// the plain Ed25519 signature of the message. Password is optional: without
// it the session is low; with the right one it is substantial if the device
// certificate allows.
type LoginRequest struct {
	ChallengeID string `json:"challenge_id"`
	DeviceID    string `json:"device_id"`
	Signature   string `json:"signature"`
	Password    string `json:"password,omitempty"`
}

// SessionResponse answers login and refresh (201).
type SessionResponse struct {
	Token        string    `json:"token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"` // of Token
	Level        string    `json:"level"`
}

// POST /v1/sessions/refresh (no auth; the refresh token is the credential).
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// LoginMessagePrefix starts every login signature, so that a device key's
// signature over a login challenge can never be mistaken for a signature in
// any other kanal protocol.
const LoginMessagePrefix = "kanal login v1\n"

// LoginMessage returns the exact bytes a device signs to log in:
//
//	"kanal login v1\n" + challenge_id + "\n" + device_id + "\n" + nonce
//
// where nonce is the base64 string exactly as the challenge response gave it
// (not the decoded bytes), and no trailing newline.
func LoginMessage(challengeID, deviceID, nonce string) []byte {
	return []byte(LoginMessagePrefix + challengeID + "\n" + deviceID + "\n" + nonce)
}

// RenewMessagePrefix starts every renewal proof. It differs from
// LoginMessagePrefix, so a login signature is never a renewal proof and
// the other way round.
const RenewMessagePrefix = "kanal device renew v1\n"

// RenewMessage returns the exact bytes a device's current key signs to
// renew the device with the certificate request csrDER:
//
//	"kanal device renew v1\n" + challenge_id + "\n" + device_id + "\n" + nonce + "\n" + hex(SHA-256(csr))
//
// where nonce is the base64 string exactly as the challenge response gave
// it, csr is the DER of the certificate request (the bytes that are
// base64-encoded in RenewRequest.CSR), hex is lower case, and there is no
// trailing newline. The request carries the new public key, so the proof
// binds the old key, the new key, the device and a fresh server challenge.
func RenewMessage(challengeID, deviceID, nonce string, csrDER []byte) []byte {
	h := sha256.Sum256(csrDER)
	return []byte(RenewMessagePrefix + challengeID + "\n" + deviceID + "\n" + nonce + "\n" + hex.EncodeToString(h[:]))
}

// ApproveMessagePrefix starts every approval of a new device by an
// enrolled one; it differs from the login and renewal prefixes.
const ApproveMessagePrefix = "kanal device approve v1\n"

// ApproveMessage returns the exact bytes an enrolled device's key signs to
// approve the enrolment of the device whose certificate request is csrDER:
//
//	"kanal device approve v1\n" + challenge_id + "\n" + approver_device_id + "\n" + nonce + "\n" + hex(SHA-256(csr))
//
// with the same conventions as RenewMessage.
func ApproveMessage(challengeID, approverID, nonce string, csrDER []byte) []byte {
	h := sha256.Sum256(csrDER)
	return []byte(ApproveMessagePrefix + challengeID + "\n" + approverID + "\n" + nonce + "\n" + hex.EncodeToString(h[:]))
}

// GET /v1/me (session).
type MeResponse struct {
	AccountID string `json:"account_id"`
	Email     string `json:"email"`
	DeviceID  string `json:"device_id"`
	Level     string `json:"level"` // of the session
	// Proofing says what stands behind Level (docs/levels.md): "e-mail",
	// "device-bound, not identity-proofed" or "eID (identity-proofed)".
	Proofing string `json:"proofing"`
	// EIDLinked: a proven identity is bound to the account.
	EIDLinked     bool           `json:"eid_linked"`
	Organisations []MyMembership `json:"organisations"`
}

// MyMembership is one organisation the caller belongs to.
type MyMembership struct {
	OrgID string `json:"org_id"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

// POST /v1/admin/orgs (operator).
type CreateOrgRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // office, council or merchant
}

// Organisation answers POST /v1/admin/orgs (201) and
// POST /v1/admin/orgs/{id}/verify (200, with Certificate).
type Organisation struct {
	OrgID       string     `json:"org_id"`
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Verified    bool       `json:"verified"`
	CreatedAt   time.Time  `json:"created_at"`
	VerifiedAt  *time.Time `json:"verified_at,omitempty"`
	Certificate string     `json:"certificate,omitempty"` // PEM organisation CA certificate
	// RequireHighForAgents: an account becomes an agent only with an eID
	// linked at level high (docs/levels.md).
	RequireHighForAgents bool `json:"require_high_for_agents"`
}

// OrgSettingsRequest is the body of PATCH /v1/orgs/{id} (operator, owner
// or admin). Answered with the Organisation (200).
type OrgSettingsRequest struct {
	RequireHighForAgents *bool `json:"require_high_for_agents"`
}

// GET /v1/admin/audit?after=<id>&limit=<n> (operator).
type AuditList struct {
	Entries []AuditEntry `json:"entries"`
}

// AuditEntry is one line of the append-only audit log.
type AuditEntry struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`  // "operator:<token id>" (op1, op2, …), "account:<id>", or the kanald command that issued an operator token
	Action    string    `json:"action"` // e.g. org.create, org.verify, member.add, member.remove, device.revoke, operator.issue, operator.reset, operator.request (every request made with an operator token, before it runs; Detail is its method and path)
	OrgID     string    `json:"org_id,omitempty"`
	AccountID string    `json:"account_id,omitempty"` // the account acted upon
	Detail    string    `json:"detail,omitempty"`
}

// POST /v1/orgs/{id}/members (operator, or an owner or admin of the
// organisation). Exactly one of Email and AccountID.
type AddMemberRequest struct {
	Email     string `json:"email,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	Role      string `json:"role"`
}

// Member answers POST /v1/orgs/{id}/members (201).
type Member struct {
	OrgID     string    `json:"org_id"`
	AccountID string    `json:"account_id"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	// Memberships lists the membership certificates issued, one per
	// active device of the member.
	Memberships []MemberDevice `json:"memberships"`
}

// GET /v1/directory/accounts/{id}/devices (any session).
type DirectoryDevices struct {
	Devices []DirectoryDevice `json:"devices"`
	// LogSalt is the account's salt (32 bytes, standard base64): version 2
	// log entries name the account by SHA-256("kanal-account/v1" || salt
	// || account id) (docs/transparency.md). The account's own devices'
	// monitor pins it. Absent on a deployment without a log.
	LogSalt []byte `json:"log_salt,omitempty"`
}

// DirectoryDevice is another account's device as anyone may see it.
type DirectoryDevice struct {
	DeviceID    string     `json:"device_id"`
	Certificate string     `json:"certificate"` // PEM
	Status      string     `json:"status"`
	RevokedAt   *time.Time `json:"revoked_at"`
	// Log proves the device's entry in the transparency log: the device
	// entry of this certificate, or for a revoked device its
	// device-revoked entry (docs/transparency.md).
	Log *transparency.Attachment `json:"log,omitempty"`
}

// GET /v1/directory/orgs/{id} (any session).
type DirectoryOrg struct {
	OrgID       string            `json:"org_id"`
	Name        string            `json:"name"`
	Kind        string            `json:"kind"`
	Verified    bool              `json:"verified"`
	Certificate string            `json:"certificate"` // PEM, empty until verified
	Members     []DirectoryMember `json:"members"`
}

// DirectoryMember is a member with a role of agent or above (owner, admin,
// agent, organiser, seller).
type DirectoryMember struct {
	AccountID string         `json:"account_id"`
	Role      string         `json:"role"`
	Devices   []MemberDevice `json:"devices"`
}

// MemberDevice is a member's active device with its membership certificate.
type MemberDevice struct {
	DeviceID              string `json:"device_id"`
	Certificate           string `json:"certificate"`            // PEM device certificate
	MembershipCertificate string `json:"membership_certificate"` // PEM, issued by the organisation
	// Log proves the membership entry of this membership certificate
	// (directory answers only).
	Log *transparency.Attachment `json:"log,omitempty"`
}

// GET /v1/directory/ca (no auth). The revocation list is served apart,
// as DER, by GET /v1/directory/crl (application/pkix-crl), and the status
// of one device certificate by POST /v1/ocsp (RFC 6960); an
// organisation's membership CRL by GET /v1/directory/orgs/{id}/crl.
type DirectoryCA struct {
	Certificate   string   `json:"certificate"`             // PEM deployment CA certificate (the root)
	Intermediates []string `json:"intermediates,omitempty"` // PEM issuing intermediates, current first
}

// POST /v1/eid/start (substantial session): begin an eID login for the
// session's device. SealKey is a fresh HPKE public key of the device
// (base64 standard, KEM MLKEM768-X25519, RFC 9180 serialisation): the
// attributes the provider releases are sealed to it at the callback
// (docs/levels.md). Level is "high" (the default) or "substantial".
type EIDStartRequest struct {
	SealKey string `json:"seal_key"`
	Level   string `json:"level,omitempty"`
}

// EIDStartResponse: the citizen opens URL in a browser; the provider sends
// the browser back to GET /v1/eid/callback, and the device then finishes
// with POST /v1/eid/complete naming FlowID.
type EIDStartResponse struct {
	FlowID    string    `json:"flow_id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// POST /v1/eid/complete (session): the device that started the login
// proves possession of its key over a challenge of purpose "eid"
// (EIDMessage). While the browser has not come back it answers 409
// eid-pending and consumes nothing.
type EIDCompleteRequest struct {
	FlowID      string `json:"flow_id"`
	ChallengeID string `json:"challenge_id"`
	Signature   string `json:"signature"`
}

// EIDCompleteResponse: the session's level is now Level. Attributes is the
// HPKE ciphertext (base64 standard; info "kanal eid attributes v1\n" +
// flow id) of the JSON EIDAttributes, sealed to the start's SealKey.
type EIDCompleteResponse struct {
	Level      string `json:"level"`
	ACR        string `json:"acr"`
	Attributes string `json:"attributes"`
}

// EIDAttributes are the verified attributes an eID provider released. The
// server holds them only in memory during the callback; devices get them
// sealed to their key.
type EIDAttributes = oidc.Attributes

// EIDSealed is the JSON sealed to the device at the end of an eID login:
// the attributes' members and, after a login at level high on a
// deployment with a notary, verified_name (verifiedname.go).
type EIDSealed struct {
	EIDAttributes
	VerifiedName *VerifiedNameAttestation `json:"verified_name,omitempty"`
}

// EIDMessagePrefix starts every device proof that finishes an eID login.
const EIDMessagePrefix = "kanal eid v1\n"

// EIDMessage returns the exact bytes the device signs to finish an eID
// login:
//
//	"kanal eid v1\n" + challenge_id + "\n" + device_id + "\n" + nonce + "\n" + flow_id
func EIDMessage(challengeID, deviceID, nonce, flowID string) []byte {
	return []byte(EIDMessagePrefix + challengeID + "\n" + deviceID + "\n" + nonce + "\n" + flowID)
}

// EIDAttributesInfo is the HPKE info of the sealed attributes of flowID.
func EIDAttributesInfo(flowID string) []byte { return []byte("kanal eid attributes v1\n" + flowID) }
