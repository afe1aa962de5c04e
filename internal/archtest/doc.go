// Package archtest holds the tests that keep kanal's architecture as
// docs/design.md draws it: the direction of imports between packages, and a doc
// comment on every package. It has no code of its own.
package archtest
