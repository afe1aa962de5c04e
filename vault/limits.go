package vault

// Limits of the vault. The size and quota defaults are Options' zero
// values; the rest are fixed.
const (
	// DefaultMaxDocument is the largest ciphertext of one version.
	DefaultMaxDocument = 32 << 20
	// DefaultQuota is what one account may store, all versions counted,
	// in the personal class; the issued class has its own quota of the
	// same size, so that documents offices issue never crowd out the
	// citizen's own.
	DefaultQuota = 1 << 30

	// MaxMeta is the largest encrypted metadata (title, tags, folder,
	// file name, media type) of one version.
	MaxMeta = 8 << 10
	// MaxWrapped is the largest wrapped key.
	MaxWrapped = 256
	// MaxKeys is how many wrapped keys one request may carry.
	MaxKeys = 256
	// MaxBody is the largest JSON request body.
	MaxBody = 256 << 10
	// MaxList is how many documents a listing returns at most.
	MaxList = 1000
	// MaxVersions is how many versions a document may have.
	MaxVersions = 1000
)

// Quota classes: what the account put itself, and what offices issued
// into it.
const (
	ClassPersonal = "personal"
	ClassIssued   = "issued"
)
