package miniapps

import "context"

// PaymentAsk is an app's request for a payment from the citizen, made in
// the name of its organisation.
type PaymentAsk struct {
	AppID       string
	OrgID       string
	AccountID   string
	AmountCents int64
	Purpose     string
	Creditor    string // the organisation's account holder name
	IBAN        string
	BIC         string
	DueDate     string // YYYY-MM-DD
	Key         string // idempotency key: the app's, scoped to the app
}

// Post is a message an app posts into a conversation: server-signed as
// coming from the app (a notice), not an agent's end-to-end message.
type Post struct {
	AppID        string
	AppName      string
	OrgID        string
	AccountID    string
	Conversation string
	Text         string
}

// FormAsk is an app's form request to the citizen.
type FormAsk struct {
	AppID        string
	OrgID        string
	AccountID    string
	Conversation string
	TemplateID   string
	Title        string
}

// Bridge is how the bridge reaches the other domains; cmd/kanald wires
// payments, messaging and forms. A nil func answers not configured.
type Bridge struct {
	// RequestPayment creates a payment request and returns its id.
	RequestPayment func(ctx context.Context, p PaymentAsk) (string, error)
	// Post posts a server-signed message into the conversation.
	Post func(ctx context.Context, p Post) error
	// RequestForm sends a form.request into the conversation.
	RequestForm func(ctx context.Context, f FormAsk) error
}
