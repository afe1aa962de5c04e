// Package client is kanal's Go SDK for end-to-end encryption: it publishes a
// device's prekeys to the directory, keeps them topped up, claims and
// verifies other devices' bundles, runs PQXDH to start Double Ratchet
// sessions, and encrypts and decrypts messages. The CLI uses it, and the
// web client follows the same steps.
//
// The server is not trusted with keys. A claimed bundle is used only if
//
//   - its device certificate chains to the deployment CA the Client was
//     given (not the one the server names), is valid now and names the
//     device and account of the bundle,
//   - the CA's signed status of that one certificate (RFC 6960 OCSP, from
//     POST /v1/ocsp, checked against the configured CA and current) says
//     it is not revoked — a few hundred bytes however many certificates
//     were ever revoked,
//   - the device key in it signed the bundle's identity key for that device
//     (keys.VerifyIdentity), and
//   - the identity key signed the signed prekey and the ML-KEM prekey.
//
// For an organisation's agents the membership certificate must also chain
// through the organisation's certificate to the CA and name the same device
// and key. Anything else is refused and reported, never used.
//
// Nor is the server trusted with whom a message is encrypted to. Its list
// of devices for a send (the 409 stale-devices answer) is checked device by
// device against what the client verified itself: in a direct conversation
// only devices of the two accounts; with an organisation only this
// account's devices, the addressed citizen's, and devices with a membership
// of that organisation in an agent role; in a group only devices of members
// that group.change notices named. One device that fails stops the send
// with a *RecipientError, before anything is encrypted. Each account's
// devices are pinned when first met; a device met later is reported
// through Options.OnNewDevice.
//
// The first message to a device carries the PQXDH initial message with the
// sender's device certificate and identity binding, so the receiver checks
// the sender the same way, offline, before it answers.
//
// # Sessions
//
// The SDK keeps, per peer device, a current session and up to
// MaxArchivedSessions archived ones (as Signal does). Messages go out only
// under the current session; an incoming message is tried under the
// current one, then the archived ones. The initiator attaches its PQXDH
// initial message to every message until its session has decrypted a
// reply from the peer (keys.Session.HasReceivingChain): before that the
// peer may not have the session, and nothing else shows that it has.
//
// An incoming initial message is read under the session it started if
// that session is still kept. Otherwise it starts a new session only if it
// is new: the SHA-256 of the last MaxStartedSessions initial messages that
// started a session with the device are remembered, and a repeat is
// refused with keys.ErrReplay; one naming a one-time prekey already used
// fails with ErrUnknownKey. The new session becomes current, and the old
// one is archived, only once its first message has decrypted — except
// that when both devices started a session at once the one started by the
// device with the smaller id stays current. A replayed initial message can
// therefore not replace a working session. docs/e2e-sessions.md specifies
// the stored record.
//
// State — the identity key, private prekeys and sessions — lives in a Store:
// MemoryStore for tests, KeystoreStore inside the CLI's encrypted key store.
// Every change is written before the call that made it returns, so a
// ratchet step is never lost. A Client is safe for concurrent use; calls
// that change state are serialised.
//
// The package is a library: it never logs, prompts or exits.
package client
