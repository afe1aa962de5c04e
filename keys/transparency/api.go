package transparency

// The JSON shapes of the log's HTTP routes and of the proof attached to
// what the directory serves (docs/transparency.md).

// Attachment is the "log" member of a claimed bundle, a directory device or
// a member device: the entry that records the binding, the newest signed
// checkpoint and the inclusion proof of the entry in it.
type Attachment struct {
	Index      int64    `json:"index"`
	Entry      []byte   `json:"entry"`      // the encoded entry, standard base64 in JSON
	Checkpoint string   `json:"checkpoint"` // the signed checkpoint note
	Proof      []string `json:"proof"`      // standard base64 hashes
	// Salt is the salt of the account a version 2 entry names by its
	// commitment (SaltBytes bytes, standard base64 in JSON): with it, the
	// client recomputes the commitment from the account it expects. Absent
	// for version 1 entries, survey heads, and entries of erased accounts.
	Salt []byte `json:"salt,omitempty"`
}

// InclusionProof answers GET /v1/log/proof/inclusion.
type InclusionProof struct {
	Index  int64    `json:"index"`
	Size   int64    `json:"size"`
	Hashes []string `json:"hashes"`
}

// ConsistencyProof answers GET /v1/log/proof/consistency.
type ConsistencyProof struct {
	Old    int64    `json:"old"`
	New    int64    `json:"new"`
	Hashes []string `json:"hashes"`
}

// LogEntry is one entry in GET /v1/log/entries.
type LogEntry struct {
	Index int64  `json:"index"`
	Data  []byte `json:"data"` // the encoded entry, standard base64 in JSON
}

// Entries answers GET /v1/log/entries.
type Entries struct {
	Entries []LogEntry `json:"entries"`
}
