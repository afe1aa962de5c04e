package forms

import "errors"

// Errors, each wrapped with details. The HTTP edge maps each to one
// problem+json type.
var (
	ErrMalformed   = errors.New("malformed template")         // not strict JSON of the format, or too large
	ErrInvalid     = errors.New("invalid template")           // well-formed but breaks a rule of the format
	ErrSignature   = errors.New("bad template signature")     // the JWS does not verify
	ErrCertificate = errors.New("certificate not acceptable") // the chain, membership or organisation does not fit
	ErrHash        = errors.New("template hash mismatch")     // a named hash is not the template's
	ErrLineage     = errors.New("not descended from parent")  // a fork's parent is not what its lineage holds
	ErrAnswers     = errors.New("answers do not fit the form")
	ErrNotFound    = errors.New("no such template")
	ErrWithdrawn   = errors.New("template withdrawn")
	ErrExists      = errors.New("template version exists")
	ErrVersion     = errors.New("version not after the latest")
	ErrForbidden   = errors.New("not allowed")
	ErrHandoff     = errors.New("hand-off refused")
)

func isErr(err, target error) bool { return errors.Is(err, target) }
