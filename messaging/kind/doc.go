// Package kind is the registry of typed message kinds: the plaintext that
// travels inside kanal's end-to-end encryption. Every kind — text,
// attachment, receipt, poll, survey.invite, offer, contract,
// payment.request, payment.status, form.request, form.submission,
// case.status and case.note (forms.go: a form's answers and the case they
// open), document.share, and profile (an account's display name and avatar,
// docs/profiles.md), and identity.verified-name (a citizen's eID-verified
// name for an office, docs/levels.md) — has one Go type here with its validation, and the SDK
// refuses to send or accept a message that does not pass it.
//
// The server never sees these messages. It sees only the coarse Class of a
// kind (message, receipt, transaction), which the sender states next to the
// ciphertext so the server can choose push urgency and retention.
package kind
