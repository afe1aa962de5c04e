package transparency

// Limits of the log formats, in one place.
const (
	// MaxEntryBytes bounds one encoded entry.
	MaxEntryBytes = 4096
	// MaxIDBytes bounds an account, device, organisation or survey id
	// (identity/ca's MaxIDLength).
	MaxIDBytes = 128
	// MaxRoleBytes bounds a membership role.
	MaxRoleBytes = 32
	// MaxKeyBytes bounds an identity key's wire encoding in an entry.
	MaxKeyBytes = 1024
	// MaxHeadBytes bounds a survey board head hash.
	MaxHeadBytes = 64
	// MaxCheckpointBytes bounds a signed checkpoint note, signatures and
	// cosignatures included.
	MaxCheckpointBytes = 16 << 10
	// MaxOriginBytes bounds a checkpoint's origin line.
	MaxOriginBytes = 256
	// MaxProofHashes bounds the hashes of an inclusion or consistency
	// proof: a tree of 2^63 leaves needs at most 2·63.
	MaxProofHashes = 128
)
