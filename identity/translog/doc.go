// Package translog is the server side of kanal's transparency log: the
// entries, the Merkle tree's stored hashes and the signed checkpoints in
// the database (SQLite or PostgreSQL, shared by all nodes), appends made in
// the same transaction as the binding they record, the proofs attached to
// what the directory serves, and the public routes under /v1/log.
//
// The formats are keys/transparency's; docs/transparency.md specifies them
// and the routes.
package translog
