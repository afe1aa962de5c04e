package surveys

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// Problem types of the surveys API. Clients branch on these.
var (
	TypeBadDefinitionSignature = web.NewType("bad-definition-signature")
	TypeNotEligible            = web.NewType("not-eligible")
	TypeTokenAlreadyIssued     = web.NewType("token-already-issued")
	TypeBadToken               = web.NewType("bad-token")
	TypeOtherSurveyToken       = web.NewType("token-of-another-survey")
	TypeAlreadyVoted           = web.NewType("already-voted")
	TypeSurveyNotOpen          = web.NewType("survey-not-open")
	TypeSurveyOpened           = web.NewType("survey-opened")
	TypeSurveyNotClosed        = web.NewType("survey-not-closed")
	TypeAlreadyTallied         = web.NewType("already-tallied")
	TypeNotTallied             = web.NewType("not-tallied")
	TypeBadTallyKey            = web.NewType("bad-tally-key")
	TypeWrongMode              = web.NewType("wrong-survey-mode")
	TypeSessionNotAllowed      = web.NewType("session-not-allowed")
	TypeNotConfigured          = web.NewType("not-configured")
)

// CreateRequest is the body of POST /v1/surveys.
type CreateRequest struct {
	OrgID string `json:"org_id"`
	Mode  string `json:"mode"`
}

// Draft is the answer to POST /v1/surveys: the survey id and, for an
// anonymous survey, the blind-signature key the definition must name.
type Draft struct {
	SurveyID string `json:"survey_id"`
	OrgID    string `json:"org_id"`
	Mode     string `json:"mode"`
	TokenKey []byte `json:"token_key,omitempty"`
}

// Survey is the answer to GET /v1/surveys/{id}.
type Survey struct {
	Signed       Signed `json:"signed"`
	Status       string `json:"status"`
	BoardLength  int64  `json:"board_length"`
	TokensIssued int64  `json:"tokens_issued"`
	// Closing is the organiser's signed early closing, if there was one.
	Closing *SignedClosing `json:"closing,omitempty"`
	// HeadLog proves the head's survey-head entry (survey, length, head
	// hash) in the deployment's transparency log, so that the server cannot
	// show different boards to different voters without both heads being
	// in the one public log (docs/transparency.md). Absent when the
	// deployment runs no log.
	HeadLog *transparency.Attachment `json:"head_log,omitempty"`
}

// Summary is one entry of GET /v1/surveys, the open surveys for the caller.
type Summary struct {
	SurveyID string    `json:"survey_id"`
	OrgID    string    `json:"org_id"`
	Title    string    `json:"title"`
	Mode     string    `json:"mode"`
	ClosesAt time.Time `json:"closes_at"`
}

// SurveyList is the answer to GET /v1/surveys.
type SurveyList struct {
	Surveys []Summary `json:"surveys"`
}

// TokenRequestBody is the body of POST /v1/surveys/{id}/token.
type TokenRequestBody struct {
	Blinded []byte `json:"blinded"`
}

// IdempotencyKeyHeader is the request header that lets an HTTP client
// repeat a token request or a ballot by itself (web.IdempotencyKeyHeader).
// Both are safe to repeat: the same blinded request gets the same
// signature again and is recorded once; the same ballot is answered with
// the receipt of its board entry and is counted once.
const IdempotencyKeyHeader = web.IdempotencyKeyHeader

// TokenIdempotencyKey is a token request's Idempotency-Key: the SHA-256
// of its blinded value in lower-case hex, the hash the server records the
// issuance with.
func TokenIdempotencyKey(blinded []byte) string { return hexSHA256(blinded) }

// BallotIdempotencyKey is a ballot's Idempotency-Key, anonymous or named:
// the SHA-256 of its ciphertext in lower-case hex.
func BallotIdempotencyKey(ciphertext []byte) string { return hexSHA256(ciphertext) }

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TokenResponse carries the blind signature.
type TokenResponse struct {
	BlindSignature []byte `json:"blind_signature"`
}

// BallotRequest is the body of POST /v1/surveys/{id}/ballots (anonymous,
// with Token and without a session) and of
// POST /v1/surveys/{id}/named-ballots (with a session, without Token).
type BallotRequest struct {
	Token      *Token `json:"token,omitempty"`
	Ciphertext []byte `json:"ciphertext"`
}

// BoardPage is the answer to GET /v1/surveys/{id}/board.
type BoardPage struct {
	Head    SignedHead `json:"head"`
	Entries []Entry    `json:"entries"`
	// Closing is the organiser's signed early closing, if there was one.
	Closing *SignedClosing `json:"closing,omitempty"`
	// HeadLog proves the head's survey-head entry (survey, length, head
	// hash) in the deployment's transparency log, so that the server cannot
	// show different boards to different voters without both heads being
	// in the one public log (docs/transparency.md). Absent when the
	// deployment runs no log.
	HeadLog *transparency.Attachment `json:"head_log,omitempty"`
}

// TallyRequest is the body of POST /v1/surveys/{id}/tally.
type TallyRequest struct {
	TallyKey []byte `json:"tally_key"`
}
