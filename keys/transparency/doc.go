// Package transparency holds the formats of kanal's transparency log, pure
// (no I/O, no clock): the entries that record each binding the server
// vouches for (a device and its certificate, a device's E2E identity key, a
// membership, their revocations, a survey board head), their leaf hashes,
// the signed checkpoints of the log (C2SP tlog-checkpoint, a signed note)
// and the verification of inclusion and consistency proofs.
//
// The Merkle tree is RFC 6962's, computed and checked with
// golang.org/x/mod/sumdb/tlog; checkpoints are signed and opened with
// golang.org/x/mod/sumdb/note. docs/transparency.md specifies every format
// byte by byte; testdata/vectors.txt holds entries with their leaf hashes.
package transparency
