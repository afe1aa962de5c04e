// Package ca is kanal's deployment certificate authority: it issues and
// verifies the X.509 certificates that let a client know who is on the other
// end of a conversation without asking the server.
//
// The PKI has two branches under one self-signed root, the deployment CA:
//
//	deployment CA (root, ECDSA P-256, ~10 years)
//	├── device certificate          binds device key ↔ account ↔ device ↔ level of assurance
//	└── organisation certificate    binds org key ↔ organisation id ↔ kind ↔ display name
//	    └── membership certificate  binds device key ↔ account ↔ device ↔ organisation ↔ role
//
// A device certificate is issued from a PKCS#10 request that the device signs
// with its own key (proof of possession), so the CA never sees a device's
// private key. It names the device with two URI subject alternative names,
// kanal:account:<id> and kanal:device:<id>, and carries the account's level of
// assurance (low, substantial, high). It is short-lived: a device that is
// removed, or an account whose level drops, simply stops being re-issued, and
// the revocation list covers the days in between.
//
// Each verified organisation (office, council, merchant) receives an
// intermediate CA certificate, limited to path length zero so it can only sign
// end-entity certificates. Its subject O= is the name citizens see, its URI
// SAN kanal:org:<id> is the stable identity, and the organisation kind is
// recorded in the certificate. The organisation authority, not the root, signs
// membership certificates for its members' device keys: a membership names the
// same account and device as the device certificate, the organisation and the
// member's role. A message is "from the Bürgeramt" only when the sending
// device's certificate chains to the root, the membership certificate chains
// through the Bürgeramt's organisation certificate to the same root, and both
// name the same device and key (CheckSameDevice). Removing a member revokes
// only the membership; the device keeps its personal identity.
//
// # Attributes and the kanal OID arc
//
// kanal has no IANA enterprise number, so its OIDs live under a UUID arc
// (ITU-T X.667): 2.25.33564949032682248019483070840288334333. Go's X.509
// parser rejects any certificate whose extension OIDs have components wider
// than 31 bits, so kanal's facts cannot be extensions of their own with such
// OIDs. They are instead attributes inside the standard, non-critical
// subjectDirectoryAttributes extension (RFC 5280 section 4.2.1.8), whose own
// OID is short; the attribute types are under the kanal arc (see oid.go).
// Because the extension is non-critical, tools that do not know kanal, such
// as openssl verify, still accept the certificates.
//
// The package is a library: it never logs or exits, time is always a
// parameter, and randomness comes from crypto/rand.
package ca
