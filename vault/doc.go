// Package vault keeps a citizen's documents encrypted end to end: each
// version of a document is encrypted on a device with a fresh key, that
// key is HPKE-wrapped to every device of the account (a device enrolled
// later gets it wrapped by an existing device, never by the server), and
// titles, tags, folders and file names are encrypted with it too. The
// server stores the ciphertext in a content-addressed blob store (the data
// directory, or an S3-compatible object store) and sees only sizes, times,
// the quota class and who may fetch what. Offices issue signed documents
// into a citizen's vault; a citizen shares a version with an account or an
// organisation in a conversation and may withdraw the share.
// See docs/vault.md.
package vault
