package keys

import "errors"

// Sentinel errors callers may branch on with errors.Is. Every error returned
// by this package wraps one of these or a cause from the standard library, and
// names the operation ("keys.ratchet: ...").
var (
	// ErrInvalidEncoding reports a malformed binary or text encoding: wrong
	// length, version, kind, prefix or trailing bytes.
	ErrInvalidEncoding = errors.New("invalid encoding")
	// ErrInvalidKey reports a key that is missing (zero value) or unusable.
	ErrInvalidKey = errors.New("invalid key")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrUnsupportedKey reports a device key type other than ECDSA P-256 or
	// Ed25519.
	ErrUnsupportedKey = errors.New("unsupported device key type")
	// ErrLowOrderPoint reports an X25519 exchange that produced the all-zero
	// output, that is a peer key of low order.
	ErrLowOrderPoint = errors.New("low-order X25519 public key")
	// ErrPrekeyMismatch reports an initial message naming prekeys other than
	// the ones the responder supplied, or a missing one-time prekey.
	ErrPrekeyMismatch = errors.New("prekey mismatch")
	// ErrDecrypt reports a message that failed authentication.
	ErrDecrypt = errors.New("message authentication failed")
	// ErrReplay reports a message whose key was already used (or expired).
	ErrReplay = errors.New("replayed or expired message")
	// ErrTooManySkipped reports a message that would skip more than MaxSkip
	// message keys.
	ErrTooManySkipped = errors.New("too many skipped messages")
	// ErrNoSendingChain reports an Encrypt on a responder session that has
	// not yet received a message.
	ErrNoSendingChain = errors.New("no sending chain yet")
	// ErrUnknownSenderKey reports a sender-key message under a key id the
	// receiver does not hold (for example after the sender rotated).
	ErrUnknownSenderKey = errors.New("unknown sender key")
	// ErrTooLarge reports an input over one of the limits in limits.go.
	ErrTooLarge = errors.New("input too large")
)
