// Package payments is kanal's payments domain: merchants' and offices'
// payment requests for signed contracts and fees, their lifecycle (open →
// paid | cancelled | expired, paid → refunded), the providers that settle
// them (a card/wallet payment service provider with signed webhooks, bank
// transfer reconciled from camt.053 statements), a double-entry ledger in
// integer cents, idempotent creates and an audit trail.
//
// Offers and contracts are signed on the clients (payments/jws); kanald
// only registers a verified contract by its hash with the metadata it must
// act on (parties, total). Item lists, terms and the signed documents
// travel end to end encrypted between the parties. See docs/payments.md.
package payments
