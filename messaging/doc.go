// Package messaging is kanal's channel: the prekey directory through which
// devices find each other's end-to-end keys, and (in its subpackages) the
// per-device mailboxes, the typed message kinds and the Go client SDK.
//
// # Prekey directory
//
// Each device publishes, authenticated as itself, its E2E identity key with
// the signature of its device key that binds the two (keys.SignIdentity),
// a signed X25519 prekey, a signed ML-KEM-768 last-resort prekey, and
// batches of one-time X25519 and one-time ML-KEM-768 prekeys. The directory
// checks every signature before it stores anything: the binding against the
// public key of the device certificate that identity issued, the prekey
// signatures against the identity key. It still is not trusted: clients
// verify the certificate chain, the binding and the bundle signatures
// themselves (messaging/client does).
//
// Any authenticated caller may claim a bundle for every active device of an
// account, or for every agent device of an organisation. Each one-time
// prekey is handed out at most once, also when claims race on several
// nodes: the claim deletes the key it hands out, and a claimer whose delete
// lost the race tries the next key. When no one-time ML-KEM prekey is left,
// the last-resort one is served; when no one-time X25519 prekey is left,
// the bundle carries none. Claims are rate-limited per account with counters
// in the database, so the limit holds across nodes.
//
// What the server learns: which account claims whose bundles and when, and
// how many prekeys each device has left. It never holds a private key.
//
// # Sending
//
// POST /v1/messages stores one ciphertext per device of a direct (account ↔
// account) or organisation (citizen ↔ organisation) conversation. The
// sender must address exactly the active devices that must receive the
// message: every active device of the recipient account (or every active
// agent device of the organisation) and its own other active devices, for
// multi-device sync. Any difference is a 409 stale-devices answer that
// lists the missing and stale devices and stores nothing. Conversation ids
// are derived, never chosen: DirectConversation and OrgConversation.
//
// A send is idempotent per sending device and client_id: its envelopes and
// a row holding its answer commit in one transaction, and a retry gets that
// first answer back. After commit, Options.Notify wakes the recipients'
// streams. Sends are rate-limited per device, in each node's memory (see
// ratelimit.go). A send with no envelopes at all is how a client asks for
// the device set: it is answered with the stale-devices problem, whose
// "devices" and "accounts" members name every device to address. Devices
// that have not published their keys are not addressed.
//
// A device may also send on its open stream (frames.go): the same checks,
// answered with "sent" or "send_failed" frames.
//
// # Groups
//
// POST /v1/groups creates a group (g_…) with the caller as admin; admins
// add and remove members and change roles, members leave. The server
// keeps the member list because it must know whom to deliver to; each
// change reaches every member's devices as a group.change notice, stored
// in the same transaction as the change (groups.go, notice.go).
//
// # Notices
//
// What the server states itself (group.change, payment.status) it posts
// as notices: envelopes from NoticeSender whose statement the deployment
// notary signs for one device, one conversation and one kind. Only kinds
// on NoticeKind are sent; messaging/client believes nothing else from the
// server (notice.go; the bytes are in docs/api-messaging.md).
//
// What the server learns from a send: sender device, recipient devices,
// conversation, coarse class, sizes and times; never the plaintext.
//
// Accounts, devices and certificates belong to identity. This package
// declares what it needs from it — Directory, Authenticator — and
// cmd/kanald wires the adapters; DeletePrekeys has the shape of identity's
// revocation hook, so a revoked device's prekeys go in the same transaction
// that revokes it.
package messaging
