package kind

// Limits of message bodies. They bound what a client must be ready to
// parse; the envelope limit bounds the ciphertext on the server.
const (
	MaxMessage       = 48 << 10 // a whole encoded message
	MaxText          = 16 << 10
	MaxID            = 64
	MaxName          = 200
	MaxReceiptIDs    = 100
	MaxPollOptions   = 20
	MaxPollQuestion  = 500
	MaxAttachment    = 25 << 20 // size of the encrypted blob an attachment names (messaging.MaxBlob)
	MaxJWS           = 32 << 10
	MaxFormAnswers   = 32 << 10 // the answers (and a request's prefilled values) of one form, as JSON
	MaxFormFiles     = 20       // attachments of one form submission
	MaxCreditor      = 70       // characters: EPC069-12 limit for the beneficiary name
	MaxReference     = 35
	MaxPurpose       = 140         // characters: EPC069-12 unstructured remittance information
	MaxAmountCents   = 99999999999 // EPC069-12: at most 999,999,999.99 EUR
	CurrentVersion   = 1
	attachmentKeyLen = 32
)
