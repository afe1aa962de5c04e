package keys

// Limits of the keys package. They live in one place so that the decoders,
// the ratchet and the sender keys agree, and so that a reviewer can see at a
// glance how much work a hostile peer can make a client do.
const (
	// MaxSkip is the largest number of message keys one incoming message may
	// make a receiving chain skip (Double Ratchet MAX_SKIP, also used for
	// sender-key chains). A message further ahead is rejected with
	// ErrTooManySkipped and the state is left as it was.
	MaxSkip = 1000

	// MaxSkippedKeys caps the skipped message keys a session (or a sender-key
	// receiver) stores across all chains. When the cap is reached the oldest
	// keys are dropped first: a message that old is treated as lost.
	MaxSkippedKeys = 2000

	// MaxSkippedSteps is the lifetime of a skipped message key, counted in
	// receiving DH ratchet steps. A key stored more than this many steps ago is
	// deleted: a message delayed that long is treated as lost. It bounds how
	// long a key that could decrypt an old message stays on disk.
	MaxSkippedSteps = 32

	// MaxDeviceIDLen bounds a device id inside bundles and identity bindings.
	MaxDeviceIDLen = 128

	// MaxAssociatedDataLen bounds the associated data bound to a session.
	MaxAssociatedDataLen = 1024

	// MaxMessageLen bounds a ratchet or sender-key message (header, ciphertext
	// and tag). Larger payloads are attachments encrypted under their own key.
	MaxMessageLen = 256 << 10

	// MaxTextKeyLen bounds the text form of any key, checked before decoding
	// so a pasted megabyte is rejected without being base64-decoded.
	MaxTextKeyLen = 2048

	// MaxSessionLen bounds a serialized session state.
	MaxSessionLen = 256 << 10

	// MaxBundleJSONLen bounds the JSON form of a prekey bundle.
	MaxBundleJSONLen = 8 << 10
)
