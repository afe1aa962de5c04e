// Package pushtest is a test push service for kanal's tests: it speaks
// RFC 8030 over https as real push services do, checks the VAPID token of
// every push (RFC 8292: ES256 signature, aud, exp at most 24 hours ahead,
// sub), decrypts the RFC 8291 payload with the subscription's private key,
// and answers 201, 404, 410, 429 or 500, or hangs, as a test asks.
package pushtest
