package messaging

import "time"

// Limits of the prekey directory, in one place.
const (
	// DefaultDeviceSetTTL is how long kanald keeps an account's device
	// set in a node's memory for sends (Options.DeviceSetTTL): the
	// longest a device that published its keys through another node goes
	// unaddressed by this node's senders who do not know of it yet, and
	// the longest a revocation whose bus message was lost goes unseen.
	DefaultDeviceSetTTL = 2 * time.Second

	// MaxPrekeyBatch is the most one-time prekeys of each kind (X25519 and
	// ML-KEM-768) one upload may carry.
	MaxPrekeyBatch = 100

	// MaxStoredPrekeys is the most unused one-time prekeys of each kind the
	// directory keeps per device. An ML-KEM-768 public key is 1184 bytes,
	// so this bounds a device's footprint at well under a megabyte.
	MaxStoredPrekeys = 500

	// LowPrekeys is the count below which a device is told (the low flag of
	// the status and upload answers) to upload more one-time prekeys of a
	// kind.
	LowPrekeys = 20

	// ClaimWindow and MaxClaimsPerWindow rate-limit bundle claims per
	// claiming account: at most MaxClaimsPerWindow claim requests (each
	// page of a paged claim is one) in each fixed window. A claim takes
	// one one-time prekey of each kind per device, so this bounds how fast
	// one account can drain other devices' one-time keys (after which
	// sessions still start, on the signed and last-resort prekeys). The
	// first message to a group of MaxGroupMembers accounts claims once per
	// other member (99), an office at its maximum takes five pages: 120 a
	// minute lets either happen at once.
	ClaimWindow        = time.Minute
	MaxClaimsPerWindow = 120

	// MaxClaimDevices is the most bundles one claim (one page) returns:
	// a claim for more devices — an organisation's agents — is answered in
	// pages, each naming the next (ClaimResponse.Next).
	MaxClaimDevices = 200

	// MaxClaimFilter bounds ClaimRequest.Devices, the devices a claim is
	// narrowed to: every device one send may address.
	MaxClaimFilter = MaxSendDevices

	// MaxSendDevices is the most envelopes (recipient devices, the
	// sender's own other devices included) one send may carry: a group of
	// MaxGroupMembers accounts with identity.MaxDevices devices each, or an
	// organisation of identity.MaxOrgMembers members and a citizen, fits.
	MaxSendDevices = 1000

	// SendWindow and MaxSendsPerWindow rate-limit POST /v1/messages per
	// sending device, in fixed windows. Retries answered from the
	// idempotency table do not count.
	SendWindow        = time.Minute
	MaxSendsPerWindow = 600

	// DefaultMinSendsInFlight is how many sends in flight admission
	// control always admits (Options.Admission.MinQueue zero), while the
	// throughput it derives its bound from is still being measured.
	DefaultMinSendsInFlight = 256

	// GroupWindow, MaxGroupCreatesPerWindow and MaxGroupChangesPerWindow
	// rate-limit, per device, the creation of groups and the membership
	// changes an admin makes (add, role, remove): each writes a notice to
	// every device of every member, so a loop of them floods people who
	// never asked to be in a group. Leaving a group is never limited.
	GroupWindow              = time.Hour
	MaxGroupCreatesPerWindow = 20
	MaxGroupChangesPerWindow = 300

	// MaxNoticeBytes bounds a notice statement (NoticeStatement's text
	// form). Notices are short facts; with the signature and the notary
	// certificate, base64 in JSON, the envelope stays well under
	// mailbox.MaxCiphertext.
	MaxNoticeBytes = 16 << 10

	// MaxMailboxEnvelopes and MaxMailboxBytes are the quota of one
	// recipient device's mailbox: a send that would take any of its
	// recipients' mailboxes past either is refused whole (507
	// mailbox-full) and stores nothing. The quota is the device's, shared
	// by all who send to it: a flood fills it and then holds back other
	// senders too, until the device reads (acks) or the envelopes expire —
	// what it bounds is the space one victim's mailbox can take, while
	// MaxSendsPerWindow bounds each flooding device. Server notices are
	// counted but not refused. 128 MiB is some two thousand envelopes of
	// the largest size, or tens of thousands of ordinary messages.
	MaxMailboxEnvelopes = 20000
	MaxMailboxBytes     = 128 << 20

	// MaxGroupMembers bounds a group, its pending invitations counted: a
	// group message is encrypted once per device of every member and must
	// fit in MaxSendDevices envelopes (100 × identity.MaxDevices = 1000).
	MaxGroupMembers = 100

	// InvitationLifetime is how long an invitation to a group waits for
	// its answer; after it the invitation is void and its place in the
	// group free again.
	InvitationLifetime = 14 * 24 * time.Hour

	// DeclineBlock is how long, after an account declined an invitation,
	// nobody may invite it to that group again, and its inviter may not
	// invite it to any group.
	DeclineBlock = 90 * 24 * time.Hour

	// MaxBlob is the largest attachment blob (the ciphertext of one file);
	// kind.MaxAttachment says the same to clients. 30 s of ReadTimeout
	// carry it at about 7 Mbit/s.
	MaxBlob = 25 << 20

	// MaxBlobBytesPerAccount bounds what one account's unexpired blobs may
	// take on the server.
	MaxBlobBytesPerAccount = 500 << 20

	// BlobUploadTimeout is how long an upload's reservation of quota lasts
	// while its body is read; a reservation its upload never completed
	// expires after it.
	BlobUploadTimeout = 10 * time.Minute

	// SendIdempotency is how long a send's first answer is kept for
	// retries with the same client_id.
	SendIdempotency = 24 * time.Hour

	// maxSendBody caps the body of a send: envelopes are base64, each at
	// most mailbox.MaxCiphertext bytes before encoding, but the whole send
	// is bounded well below MaxSendDevices full envelopes — 1000 first
	// messages (a post-quantum session start, about 2 KB each in base64)
	// take some 2 MB; 16 MiB leaves room for longer texts.
	maxSendBody = 16 << 20

	// maxSmallBody caps the bodies of PUT /v1/prekeys and of claims;
	// maxBatchBody a full one-time batch (an ML-KEM-768 key is about 1.6 KB
	// in text form, its signature 86 bytes).
	maxSmallBody = 16 << 10
	// maxPostBody caps POST /v1/broadcasts/{org}/posts: the announcement
	// and its JSON.
	maxPostBody  = MaxAnnouncementBytes + 1<<10
	maxBatchBody = 512 << 10
)
