package vault

// WrappedKey is a version's key HPKE-wrapped to one device (see
// docs/vault.md for the suite and the info string).
type WrappedKey struct {
	Device  string `json:"device"`
	Wrapped []byte `json:"wrapped"`
}

// PutRequest is the "meta" part of an upload (POST /v1/vault/documents,
// POST /v1/vault/documents/{id}/versions and POST /v1/vault/issued); the
// "content" part that follows is the ciphertext.
type PutRequest struct {
	SHA256 string       `json:"sha256"` // hex, of the ciphertext
	Size   int64        `json:"size"`   // of the ciphertext
	Meta   []byte       `json:"meta"`   // encrypted title, tags, folder, file name
	Keys   []WrappedKey `json:"keys"`   // to the devices of the account
	// For POST /v1/vault/issued only: the organisation issuing, the
	// citizen it issues to, and their conversation.
	Org          string `json:"org,omitempty"`
	Account      string `json:"account,omitempty"`
	Conversation string `json:"conversation,omitempty"`
}

// Version is one version of a document as the server holds it. Key is the
// version's key wrapped to the calling device, when there is one.
type Version struct {
	Version   int    `json:"version"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Meta      []byte `json:"meta"`
	CreatedAt int64  `json:"created_at"`
	CreatedBy string `json:"created_by"` // device id
	Key       []byte `json:"key,omitempty"`
}

// Document is a document and its versions, newest last.
type Document struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	Class     string    `json:"class"`
	IssuerOrg string    `json:"issuer_org,omitempty"`
	CreatedAt int64     `json:"created_at"`
	UpdatedAt int64     `json:"updated_at"`
	Versions  []Version `json:"versions"`
}

// DocumentList is GET /v1/vault/documents: each document with its newest
// version only.
type DocumentList struct {
	Documents []Document `json:"documents"`
	Usage     Usage      `json:"usage"`
}

// Usage is what an account stores against its quotas.
type Usage struct {
	PersonalBytes int64 `json:"personal_bytes"`
	IssuedBytes   int64 `json:"issued_bytes"`
	QuotaBytes    int64 `json:"quota_bytes"` // per class
	MaxDocument   int64 `json:"max_document"`
}

// Rewrap is one version whose key a device of the account lacks: the
// calling device unwraps Key and wraps it again to Device.
type Rewrap struct {
	DocumentID string `json:"document_id"`
	Version    int    `json:"version"`
	Device     string `json:"device"`
	Key        []byte `json:"key"` // wrapped to the calling device
}

// RewrapList is GET /v1/vault/rewrap.
type RewrapList struct {
	Pending []Rewrap `json:"pending"`
}

// AddKey is a key wrapped again to another device of the account.
type AddKey struct {
	DocumentID string `json:"document_id"`
	Version    int    `json:"version"`
	Device     string `json:"device"`
	Wrapped    []byte `json:"wrapped"`
}

// AddKeysRequest is POST /v1/vault/keys.
type AddKeysRequest struct {
	Keys []AddKey `json:"keys"`
}

// AddKeysResponse says how many keys were new.
type AddKeysResponse struct {
	Added int `json:"added"`
}

// ShareRequest is POST /v1/vault/documents/{id}/shares: one version, to
// an account or an organisation, in a conversation with them. The key
// travels in the document.share message the sharing device sends in that
// conversation, end to end encrypted to the recipients' devices.
type ShareRequest struct {
	Version      int    `json:"version"`
	Conversation string `json:"conversation"`
	Account      string `json:"account,omitempty"`
	Org          string `json:"org,omitempty"`
}

// Share is a version shared with an account or an organisation.
type Share struct {
	ID           string `json:"id"`
	DocumentID   string `json:"document_id"`
	Version      int    `json:"version"`
	Owner        string `json:"owner"`
	Account      string `json:"account,omitempty"`
	Org          string `json:"org,omitempty"`
	Conversation string `json:"conversation"`
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
	CreatedAt    int64  `json:"created_at"`
	WithdrawnAt  int64  `json:"withdrawn_at,omitempty"`
}

// ShareList is GET /v1/vault/shares: the shares the account made, and
// those made to it or to an organisation it is a member of.
type ShareList struct {
	Made     []Share `json:"made"`
	Received []Share `json:"received"`
}
