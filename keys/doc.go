// Package keys holds kanal's end-to-end cryptography: typed keys and the
// protocols that use them. It is pure: no I/O, no logging, no clock, no
// global state. It imports only the standard library, golang.org/x/crypto
// and github.com/cloudflare/circl (TestImports enforces this), and builds on
// standard primitives only: X25519 (crypto/ecdh; circl's dh/x25519 for the
// Double Ratchet's steps), Ed25519, ML-KEM-768 (crypto/mlkem), HKDF and
// HMAC with SHA-256, and ChaCha20-Poly1305.
//
// # Keys
//
// A device has an E2E identity (IdentityPrivate / IdentityPublic: an Ed25519
// signing key plus an X25519 agreement key), bound to its PKI device key with
// SignIdentity / VerifyIdentity. It publishes prekeys: a signed X25519 prekey,
// signed ML-KEM-768 prekeys (one last-resort key and one-time keys) and
// one-time X25519 prekeys. Every key type has a strict binary encoding
// (version byte, kind byte, fixed length) and a prefixed text encoding
// ("kanal-idpub:…") so keys of the wrong kind are rejected. Safety numbers
// (NewSafetyNumber) let two people compare identities out of band.
//
// # Protocol overview
//
//  1. Bob's device uploads its prekeys and their signatures; the directory
//     hands Alice a PrekeyBundle, which she checks with Verify (and its
//     identity with VerifyIdentity against Bob's device certificate).
//  2. Alice runs InitiatePQXDH (Signal's PQXDH: X25519 + ML-KEM-768) and
//     gets a shared key SK, associated data AD and an InitialMessage.
//  3. Both start a Double Ratchet Session (NewInitiatorSession,
//     NewResponderSession after RespondPQXDH) and exchange messages with
//     Encrypt / Decrypt. Sessions are persisted with MarshalBinary.
//  4. In large groups each member creates a SenderKey, sends its
//     SenderKeyDistribution over the pairwise sessions, and encrypts each
//     group message once; members decrypt with a SenderKeyReceiver. Sender
//     keys are rotated when membership changes.
//
// # What a message must prove
//
// A ratchet message decrypts only under a chain key that exists and was
// derived from a secret of the session: the PQXDH shared key and a DH
// output of one of our own private ratchet keys. In particular, an
// initiator has no receiving chain until it has decrypted the responder's
// first reply (the spec's CKr = None): a message whose header names the
// responder's signed prekey, the initiator's remote ratchet key until then,
// fails with ErrDecrypt, and so does any message for which no receiving
// chain exists. Session.HasReceivingChain tells a caller whether the peer
// has answered, which is when it may stop sending the PQXDH initial
// message. A failed Decrypt never changes the session.
// TestPropertyNoForgeryFromPublicValues checks, over every session state,
// that nothing built from public values (published keys, headers, zero or
// guessable chain keys) decrypts.
//
// pqxdh.go, ratchet.go and senderkey.go each start with the specification
// they follow and every deviation from it. Limits are in limits.go; errors
// callers branch on are the Err… sentinels in errors.go.
//
// Randomness: functions that create keys take an io.Reader (nil means
// crypto/rand) and derive keys from bytes read from it, so tests can fix it.
// ML-KEM encapsulation always uses crypto/rand.
package keys
