package surveys

import "time"

// Limits of surveys, in one place.
const (
	// MaxTitle, MaxDescription and MaxOptionLabel bound the texts of a
	// definition, in bytes.
	MaxTitle       = 200
	MaxDescription = 4000
	MaxPrompt      = 1000
	MaxOptionLabel = 200

	// MaxQuestions and MaxOptions bound a definition's shape.
	MaxQuestions = 50
	MaxOptions   = 30

	// MaxTextAnswer is the most a free-text question may allow, in bytes.
	MaxTextAnswer = 2000

	// MaxDuration is the longest a survey may be open.
	MaxDuration = 366 * 24 * time.Hour

	// MaxDefinition bounds a signed definition (certificates included).
	MaxDefinition = 128 << 10

	// TokenKeyBits is the size of a survey's blind-signature RSA key.
	// RFC 9474 permits 2048 bits and up; 2048 keeps issuance fast, and a
	// survey key lives only as long as its survey.
	TokenKeyBits = 2048

	// PadBlock is the size every ballot plaintext is padded to a multiple
	// of, so that the ciphertext length does not tell short answers from
	// long ones.
	PadBlock = 1024

	// MaxCiphertext bounds an encrypted ballot: every answer at its most,
	// padded, plus HPKE's encapsulated key and tag.
	MaxCiphertext = 256 << 10

	// MaxBoardPage is the most board entries one request returns.
	MaxBoardPage = 1000

	// maxSmallBody caps bodies without a definition or a ballot;
	// maxBallotBody a ballot (base64 of MaxCiphertext and the token).
	maxSmallBody  = 16 << 10
	maxBallotBody = MaxCiphertext*4/3 + 8<<10
)
