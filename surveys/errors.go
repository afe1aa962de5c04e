package surveys

import (
	"errors"
	"fmt"
)

// Errors callers branch on. Errors returned by this package wrap one of
// these and add detail; the HTTP edge maps each to one problem type.
var (
	ErrInvalid        = errors.New("surveys: invalid")
	ErrBadSignature   = errors.New("surveys: bad definition signature")
	ErrNotFound       = errors.New("surveys: no such survey")
	ErrForbidden      = errors.New("surveys: not allowed")
	ErrNotEligible    = errors.New("surveys: not eligible")
	ErrAlreadyIssued  = errors.New("surveys: token already issued")
	ErrBadToken       = errors.New("surveys: bad token")
	ErrOtherSurvey    = errors.New("surveys: token of another survey")
	ErrAlreadyVoted   = errors.New("surveys: already voted")
	ErrNotOpen        = errors.New("surveys: survey not open")
	ErrOpened         = errors.New("surveys: survey already opened")
	ErrNotClosed      = errors.New("surveys: survey not closed yet")
	ErrTallied        = errors.New("surveys: survey already tallied")
	ErrNotTallied     = errors.New("surveys: survey not tallied yet")
	ErrBadTallyKey    = errors.New("surveys: tally key does not match")
	ErrWrongMode      = errors.New("surveys: wrong mode for this survey")
	ErrBadBoard       = errors.New("surveys: bulletin board does not verify")
	ErrBadReceipt     = errors.New("surveys: receipt is not on the board or not signed by the notary")
	ErrNotConfigured  = errors.New("surveys: not configured")
	ErrSessionPresent = errors.New("surveys: anonymous ballot sent with a session")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
