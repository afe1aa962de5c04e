package payments

import "time"

// Limits of the payments domain, in one place.
const (
	// MaxAmountCents is EPC069-12's largest amount: EUR 999,999,999.99.
	MaxAmountCents = 99999999999
	MaxCreditor    = 70  // EPC069-12 beneficiary name
	MaxPurpose     = 140 // EPC069-12 unstructured remittance information
	MaxIdemKey     = 128
	MaxBody        = 64 << 10 // JSON request bodies (a contract is at most 32 KiB)
	MaxWebhookBody = 16 << 10
	MaxListLimit   = 500

	// WebhookTolerance is how far a webhook's timestamp may be from the
	// server's clock. An older delivery is refused even with a valid
	// signature, so a captured request cannot be replayed later; within
	// the window the stored event id refuses replays.
	WebhookTolerance = 5 * time.Minute

	// MaxClockSkew is how far an offer's issued_at may be from the
	// server's clock when the seller registers it. The signer chooses
	// issued_at, and certificates are checked at it, so without this
	// bound a former member could date an offer back to when they were
	// one.
	MaxClockSkew = 2 * time.Minute

	// MaxDueDays bounds how far ahead a due date may be.
	MaxDueDays = 366

	// RefundRetryAfter is how long a booked refund waits for its client to
	// retry before RetryRefunds asks the provider again itself.
	RefundRetryAfter = 5 * time.Minute
)
