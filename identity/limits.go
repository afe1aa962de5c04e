package identity

import "time"

// Limits of the identity service, in one place.
const (
	// CodeDigits, CodeLifetime and MaxCodeAttempts govern sign-up codes.
	CodeDigits      = 8
	CodeLifetime    = 15 * time.Minute
	MaxCodeAttempts = 5

	// SignupWindow and MaxSignupsPerWindow rate-limit sign-up mails per
	// address, so kanal cannot be used to flood someone's mailbox.
	SignupWindow        = time.Hour
	MaxSignupsPerWindow = 5

	// MaxSignupsPerClient and MaxSignupsGlobal rate-limit sign-up mails
	// per client address (an IPv6 address counts by its /64) and for the
	// whole deployment, in fixed windows of SignupWindow, so that nobody
	// can mail-bomb many addresses or fill the database with unverified
	// sign-ups. A refused sign-up is 429 with Retry-After and changes
	// nothing. With the sweep (ExpireSignups), which deletes a sign-up once
	// its code and its window have passed, at most about 2 ×
	// MaxSignupsGlobal unverified sign-ups are ever stored.
	MaxSignupsPerClient = 30
	MaxSignupsGlobal    = 3000

	// SetupTokenLifetime bounds the token that verification hands out.
	SetupTokenLifetime = 30 * time.Minute

	// MinPasswordLength is counted in characters, MaxPasswordBytes in bytes
	// (argon2id hashes anything, but a megabyte password is an attack).
	MinPasswordLength = 12
	MaxPasswordBytes  = 1024

	// MaxDevices is the number of active devices an account may have.
	MaxDevices = 10
	// MaxOrgMembers is the most members (of any role) an organisation may
	// have. Every active device of every member is an agent device a
	// citizen's message is encrypted to: 99 members × MaxDevices, and the
	// citizen's own other devices, fit the envelopes one send may carry
	// (messaging.MaxSendDevices, 1000).
	MaxOrgMembers = 99
	// MaxDeviceNameBytes bounds a device's display name.
	MaxDeviceNameBytes = 64

	// ChallengeLifetime bounds a login challenge; NonceBytes is its size.
	ChallengeLifetime = 2 * time.Minute
	NonceBytes        = 32

	// SessionLifetime and RefreshLifetime bound the two bearer tokens.
	SessionLifetime = time.Hour

	// EIDFlowLifetime bounds an eID login from start to callback, and
	// EIDFreshness how long after the callback the device may finish it:
	// level high comes from a fresh eID login, not one of yesterday.
	EIDFlowLifetime = 10 * time.Minute
	EIDFreshness    = 10 * time.Minute
	RefreshLifetime = 30 * 24 * time.Hour

	// Login throttling: after FreeFailures failed logins for an account (or
	// FreeAddrFailures from one client address) each further failure locks
	// the key for LockoutBase doubled per failure, at most MaxLockout.
	// Failures are forgotten FailureMemory after the last one.
	FreeFailures     = 5
	FreeAddrFailures = 20
	LockoutBase      = 30 * time.Second
	MaxLockout       = 15 * time.Minute
	FailureMemory    = 24 * time.Hour

	// Key changes: each revokes a certificate serial, which every client
	// downloads with the revocation list, so a device may change its key at
	// most MaxKeyChangesPerDevice times and an account (all its devices
	// together) MaxKeyChangesPerAccount times per KeyChangeWindow. Renewals
	// that keep the key revoke nothing and are not counted.
	KeyChangeWindow         = 24 * time.Hour
	MaxKeyChangesPerDevice  = 3
	MaxKeyChangesPerAccount = 10

	// CRLLifetime is how long a served revocation list is valid (its next
	// update). A list is signed once per revocation and re-signed when it
	// is older than CRLRefresh, so a served list always has at least
	// CRLLifetime-CRLRefresh to run; a revocation is in the next list
	// served by any node.
	CRLLifetime = time.Hour
	CRLRefresh  = 10 * time.Minute

	// StatusLifetime and StatusRefresh are the same for the status of one
	// certificate (POST /v1/ocsp).
	StatusLifetime = time.Hour
	StatusRefresh  = 10 * time.Minute

	// MaxCachedLists and MaxCachedStatuses bound what a node keeps in
	// memory of signed lists (one per organisation) and statuses (one per
	// certificate asked about).
	MaxCachedLists    = 1000
	MaxCachedStatuses = 50000

	// MaxEmailBytes bounds an e-mail address (RFC 5321 path limit).
	MaxEmailBytes = 254
	// maxSmallBody caps bodies without certificates; maxCSRBody with.
	maxSmallBody = 4 << 10
	maxCSRBody   = 32 << 10
	// MaxAuditPage is the most audit entries one request returns.
	MaxAuditPage = 500

	// DefaultOperatorTokenTTL is how long an operator token works unless
	// kanald is told otherwise; MinOperatorTokenTTL and MaxOperatorTokenTTL
	// bound what it may be told. A token is rotated with
	// `kanald operator reset` before it runs out.
	DefaultOperatorTokenTTL = 90 * 24 * time.Hour
	MinOperatorTokenTTL     = time.Hour
	MaxOperatorTokenTTL     = 365 * 24 * time.Hour
	// maxAuditDetail bounds the request line an operator request leaves
	// in the audit log.
	maxAuditDetail = 512
)

// SignupLimits are the sign-up rate limits of a Service; see
// MaxSignupsPerClient and MaxSignupsGlobal.
type SignupLimits struct {
	PerClient int // sign-ups per client address and SignupWindow
	Global    int // sign-ups of the deployment per SignupWindow
}
