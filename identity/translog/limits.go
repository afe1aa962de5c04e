package translog

// Limits of the log's routes.
const (
	// MaxEntriesPerRequest is the most entries GET /v1/log/entries returns.
	MaxEntriesPerRequest = 1000
	// TileHeight is the height of the tiles served under /v1/log/tile/
	// (sumdb's and C2SP tlog-tiles' 8: 256 hashes a tile).
	TileHeight = 8
	// cacheSeconds is how long a client may cache what does not change
	// (proofs between signed sizes, full tiles, entries).
	cacheSeconds = 86400
)
