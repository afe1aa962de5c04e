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
// The first message to a device carries the PQXDH initial message with the
// sender's device certificate and identity binding, so the receiver checks
// the sender the same way, offline, before it answers.
//
// State — the identity key, private prekeys and sessions — lives in a Store:
// MemoryStore for tests, KeystoreStore inside the CLI's encrypted key store.
// Every change is written before the call that made it returns, so a
// ratchet step is never lost. A Client is safe for concurrent use; calls
// that change state are serialised.
//
// The package is a library: it never logs, prompts or exits.
package client
