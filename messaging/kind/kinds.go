package kind

import (
	"regexp"
	"strings"
	"time"
)

// TextBody is a chat message.
type TextBody struct {
	Text    string `json:"text"`
	ReplyTo string `json:"reply_to,omitempty"`
}

func (*TextBody) Kind() Kind { return Text }
func (b *TextBody) Validate() error {
	if err := checkText("text", b.Text, MaxText, true); err != nil {
		return invalid(Text, "%v", err)
	}
	if b.ReplyTo != "" {
		if err := checkID("reply_to", b.ReplyTo); err != nil {
			return invalid(Text, "%v", err)
		}
	}
	return nil
}

// AttachmentBody names an encrypted blob stored by kanal: the recipient
// fetches it by id, checks the hash of the ciphertext, and decrypts with key.
type AttachmentBody struct {
	BlobID string `json:"blob_id"`
	Key    string `json:"key"`    // base64, 32 bytes
	SHA256 string `json:"sha256"` // of the encrypted blob
	Size   int64  `json:"size"`
	MIME   string `json:"mime"`
	Name   string `json:"name,omitempty"`
}

// BlobOverhead is what encryption adds to an attachment's file: a
// 12-byte nonce and a 16-byte tag (AES-256-GCM,
// messaging/client.UploadAttachment). The largest file an attachment
// carries is MaxAttachment - BlobOverhead.
const BlobOverhead = 12 + 16

// PlainSize is the size of the file the attachment carries: its blob
// without the nonce and the tag.
func (b *AttachmentBody) PlainSize() int64 {
	if b.Size > BlobOverhead {
		return b.Size - BlobOverhead
	}
	return b.Size
}

var mimePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$`)

func (*AttachmentBody) Kind() Kind { return Attachment }
func (b *AttachmentBody) Validate() error {
	switch {
	case checkID("blob_id", b.BlobID) != nil:
		return invalid(Attachment, "%v", checkID("blob_id", b.BlobID))
	case checkBase64("key", b.Key, attachmentKeyLen) != nil:
		return invalid(Attachment, "%v", checkBase64("key", b.Key, attachmentKeyLen))
	case checkSHA256("sha256", b.SHA256) != nil:
		return invalid(Attachment, "%v", checkSHA256("sha256", b.SHA256))
	case b.Size <= 0 || b.Size > MaxAttachment:
		return invalid(Attachment, "size must be 1..%d", MaxAttachment)
	case !mimePattern.MatchString(b.MIME):
		return invalid(Attachment, "mime must be a type/subtype")
	}
	if err := checkText("name", b.Name, MaxName, false); err != nil {
		return invalid(Attachment, "%v", err)
	}
	return nil
}

// ReceiptBody says that messages were delivered to or read on a device.
type ReceiptBody struct {
	Status string   `json:"status"` // delivered | read
	IDs    []string `json:"ids"`
}

func (*ReceiptBody) Kind() Kind { return Receipt }
func (b *ReceiptBody) Validate() error {
	if b.Status != "delivered" && b.Status != "read" {
		return invalid(Receipt, "status must be delivered or read")
	}
	if len(b.IDs) == 0 || len(b.IDs) > MaxReceiptIDs {
		return invalid(Receipt, "ids must hold 1..%d message ids", MaxReceiptIDs)
	}
	for _, id := range b.IDs {
		if err := checkID("ids", id); err != nil {
			return invalid(Receipt, "%v", err)
		}
	}
	return nil
}

// PollBody is a quick poll inside a chat: opened, voted on and closed with
// end-to-end messages; each client tallies, the server is not involved.
type PollBody struct {
	Op       string    `json:"op"` // open | vote | close
	PollID   string    `json:"poll_id"`
	Question string    `json:"question,omitempty"` // open
	Options  []string  `json:"options,omitempty"`  // open
	Multiple bool      `json:"multiple,omitempty"` // open
	ClosesAt time.Time `json:"closes_at,omitzero"` // open, optional
	Choices  []int     `json:"choices,omitempty"`  // vote: option indexes
}

func (*PollBody) Kind() Kind { return Poll }
func (b *PollBody) Validate() error {
	if err := checkID("poll_id", b.PollID); err != nil {
		return invalid(Poll, "%v", err)
	}
	switch b.Op {
	case "open":
		if err := checkText("question", b.Question, MaxPollQuestion, true); err != nil {
			return invalid(Poll, "%v", err)
		}
		if len(b.Options) < 2 || len(b.Options) > MaxPollOptions {
			return invalid(Poll, "a poll has 2..%d options", MaxPollOptions)
		}
		seen := map[string]bool{}
		for _, o := range b.Options {
			if err := checkText("option", o, MaxName, true); err != nil {
				return invalid(Poll, "%v", err)
			}
			if seen[strings.TrimSpace(o)] {
				return invalid(Poll, "option %q given twice", o)
			}
			seen[strings.TrimSpace(o)] = true
		}
		if len(b.Choices) > 0 {
			return invalid(Poll, "an open carries no choices")
		}
	case "vote":
		if len(b.Choices) == 0 || len(b.Choices) > MaxPollOptions {
			return invalid(Poll, "a vote has 1..%d choices", MaxPollOptions)
		}
		seen := map[int]bool{}
		for _, c := range b.Choices {
			if c < 0 || c >= MaxPollOptions || seen[c] {
				return invalid(Poll, "choice %d out of range or repeated", c)
			}
			seen[c] = true
		}
		if b.Question != "" || len(b.Options) > 0 {
			return invalid(Poll, "a vote carries only choices")
		}
	case "close":
		if b.Question != "" || len(b.Options) > 0 || len(b.Choices) > 0 {
			return invalid(Poll, "a close carries only the poll id")
		}
	default:
		return invalid(Poll, "op must be open, vote or close")
	}
	return nil
}

// SurveyInviteBody invites to a council survey; the survey itself, signed
// by the organiser, is fetched from kanal and verified by the client.
type SurveyInviteBody struct {
	SurveyID string    `json:"survey_id"`
	Title    string    `json:"title"`
	ClosesAt time.Time `json:"closes_at"`
}

func (*SurveyInviteBody) Kind() Kind { return SurveyInvite }
func (b *SurveyInviteBody) Validate() error {
	if err := checkID("survey_id", b.SurveyID); err != nil {
		return invalid(SurveyInvite, "%v", err)
	}
	if err := checkText("title", b.Title, MaxName, true); err != nil {
		return invalid(SurveyInvite, "%v", err)
	}
	if b.ClosesAt.IsZero() {
		return invalid(SurveyInvite, "closes_at is required")
	}
	return nil
}

// OfferBody carries a merchant's signed offer (compact JWS with the
// certificate chain); the client verifies it before showing it.
type OfferBody struct {
	OfferID string `json:"offer_id"`
	JWS     string `json:"jws"`
}

func (*OfferBody) Kind() Kind        { return Offer }
func (b *OfferBody) Validate() error { return checkSigned(Offer, "offer_id", b.OfferID, b.JWS) }

// ContractBody carries the countersigned offer.
type ContractBody struct {
	ContractID string `json:"contract_id"`
	JWS        string `json:"jws"`
}

func (*ContractBody) Kind() Kind { return Contract }
func (b *ContractBody) Validate() error {
	return checkSigned(Contract, "contract_id", b.ContractID, b.JWS)
}

var compactJWS = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$`)

func checkSigned(k Kind, idField, id, jws string) error {
	if err := checkID(idField, id); err != nil {
		return invalid(k, "%v", err)
	}
	if len(jws) == 0 || len(jws) > MaxJWS || !compactJWS.MatchString(jws) {
		return invalid(k, "jws must be a compact JWS of at most %d bytes", MaxJWS)
	}
	return nil
}

// PaymentRequestBody asks for a payment. Amounts are integer euro cents.
type PaymentRequestBody struct {
	RequestID   string `json:"request_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Creditor    string `json:"creditor"`
	IBAN        string `json:"iban"`
	Reference   string `json:"reference"`
	DueDate     string `json:"due_date"` // YYYY-MM-DD
	// Optional: what the payment is for (EPC069-12 remittance text), the
	// creditor's BIC, and the contract the request settles.
	Purpose    string `json:"purpose,omitempty"`
	BIC        string `json:"bic,omitempty"`
	ContractID string `json:"contract_id,omitempty"`
}

var (
	ibanShape = regexp.MustCompile(`^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$`)
	bicShape  = regexp.MustCompile(`^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$`)
)

func (*PaymentRequestBody) Kind() Kind { return PaymentRequest }
func (b *PaymentRequestBody) Validate() error {
	switch {
	case checkID("request_id", b.RequestID) != nil:
		return invalid(PaymentRequest, "%v", checkID("request_id", b.RequestID))
	case b.AmountCents <= 0 || b.AmountCents > MaxAmountCents:
		return invalid(PaymentRequest, "amount_cents must be 1..%d", MaxAmountCents)
	case b.Currency != "EUR":
		return invalid(PaymentRequest, "currency must be EUR")
	case checkChars("creditor", b.Creditor, MaxCreditor, true) != nil:
		return invalid(PaymentRequest, "%v", checkChars("creditor", b.Creditor, MaxCreditor, true))
	case !ibanShape.MatchString(b.IBAN):
		return invalid(PaymentRequest, "iban is not an IBAN (upper case, no spaces)")
	case checkText("reference", b.Reference, MaxReference, true) != nil:
		return invalid(PaymentRequest, "%v", checkText("reference", b.Reference, MaxReference, true))
	}
	if _, err := time.Parse(time.DateOnly, b.DueDate); err != nil {
		return invalid(PaymentRequest, "due_date must be YYYY-MM-DD")
	}
	if err := checkChars("purpose", b.Purpose, MaxPurpose, false); err != nil {
		return invalid(PaymentRequest, "%v", err)
	}
	if b.BIC != "" && !bicShape.MatchString(b.BIC) {
		return invalid(PaymentRequest, "bic is not a BIC (8 or 11 upper-case letters and digits)")
	}
	if b.ContractID != "" {
		if err := checkID("contract_id", b.ContractID); err != nil {
			return invalid(PaymentRequest, "%v", err)
		}
	}
	return nil
}

// PaymentStatusBody announces a payment request's new state.
type PaymentStatusBody struct {
	RequestID   string `json:"request_id"`
	Status      string `json:"status"` // open | paid | cancelled | expired | refunded
	AmountCents int64  `json:"amount_cents,omitempty"`
}

func (*PaymentStatusBody) Kind() Kind { return PaymentStatus }
func (b *PaymentStatusBody) Validate() error {
	if err := checkID("request_id", b.RequestID); err != nil {
		return invalid(PaymentStatus, "%v", err)
	}
	switch b.Status {
	case "open", "paid", "cancelled", "expired", "refunded":
	default:
		return invalid(PaymentStatus, "unknown status %q", b.Status)
	}
	if b.AmountCents < 0 || b.AmountCents > MaxAmountCents {
		return invalid(PaymentStatus, "amount_cents out of range")
	}
	return nil
}

// DocumentShareBody shares a vault document: the document key is wrapped
// to the recipient inside this end-to-end message.
type DocumentShareBody struct {
	DocumentID string `json:"document_id"`
	Version    int    `json:"version"`
	Name       string `json:"name"`
	Key        string `json:"key"`    // base64, 32 bytes
	SHA256     string `json:"sha256"` // of the encrypted document
}

func (*DocumentShareBody) Kind() Kind { return DocumentShare }
func (b *DocumentShareBody) Validate() error {
	switch {
	case checkID("document_id", b.DocumentID) != nil:
		return invalid(DocumentShare, "%v", checkID("document_id", b.DocumentID))
	case b.Version < 1:
		return invalid(DocumentShare, "version must be at least 1")
	case checkText("name", b.Name, MaxName, true) != nil:
		return invalid(DocumentShare, "%v", checkText("name", b.Name, MaxName, true))
	case checkBase64("key", b.Key, attachmentKeyLen) != nil:
		return invalid(DocumentShare, "%v", checkBase64("key", b.Key, attachmentKeyLen))
	case checkSHA256("sha256", b.SHA256) != nil:
		return invalid(DocumentShare, "%v", checkSHA256("sha256", b.SHA256))
	}
	return nil
}

// DocumentWithdrawnBody tells a share's recipients that its owner
// withdrew it: the recipient can no longer fetch the document; what it
// fetched before stays with it.
type DocumentWithdrawnBody struct {
	ShareID    string `json:"share_id"`
	DocumentID string `json:"document_id"`
	Version    int    `json:"version"`
	Owner      string `json:"owner"`
}

func (*DocumentWithdrawnBody) Kind() Kind { return DocumentWithdrawn }
func (b *DocumentWithdrawnBody) Validate() error {
	for _, f := range []struct{ name, v string }{{"share_id", b.ShareID}, {"document_id", b.DocumentID}, {"owner", b.Owner}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(DocumentWithdrawn, "%v", err)
		}
	}
	if b.Version < 1 {
		return invalid(DocumentWithdrawn, "version must be at least 1")
	}
	return nil
}

// GroupChangeBody announces a change of a group's members: Op is created,
// added, removed, left or role; AccountID is the member it concerns (for
// created, the creator), By the admin who made the change, Role the
// member's role after it (admin or member; empty when the member is gone).
// Invitations are announced too, and change no member: invited (Role the
// role the account will have; By the inviting admin), declined (By the
// account that declined) and uninvited (an admin, By, withdrew it). An
// accepted invitation is an added whose By is the inviting admin.
// Op member lists a member who was there before, to a member just added
// or to a device that publishes its keys later, so that it knows the
// whole group; By is then the group's creator.
type GroupChangeBody struct {
	GroupID   string `json:"group_id"`
	Op        string `json:"op"`
	AccountID string `json:"account_id"`
	By        string `json:"by"`
	Role      string `json:"role,omitempty"`
}

func (*GroupChangeBody) Kind() Kind { return GroupChange }
func (b *GroupChangeBody) Validate() error {
	for _, f := range []struct{ name, v string }{{"group_id", b.GroupID}, {"account_id", b.AccountID}, {"by", b.By}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(GroupChange, "%v", err)
		}
	}
	switch b.Op {
	case "created", "added", "role", "member", "invited":
		if b.Role != "admin" && b.Role != "member" {
			return invalid(GroupChange, "role must be admin or member")
		}
	case "removed", "left", "declined", "uninvited":
		if b.Role != "" {
			return invalid(GroupChange, "role must be empty for %s", b.Op)
		}
	default:
		return invalid(GroupChange, "op must be created, added, removed, left, role, member, invited, declined or uninvited")
	}
	return nil
}

// OrgChangeBody tells an organisation's agents that its member AccountID
// left: Op "erased" means the member's account was erased (GDPR Art. 17),
// so its membership certificates are revoked and its devices will never
// answer again. The organisation's audit log keeps the event under the
// erasure's pseudonym.
type OrgChangeBody struct {
	OrgID     string `json:"org_id"`
	Op        string `json:"op"`
	AccountID string `json:"account_id"`
}

func (*OrgChangeBody) Kind() Kind { return OrgChange }
func (b *OrgChangeBody) Validate() error {
	for _, f := range []struct{ name, v string }{{"org_id", b.OrgID}, {"account_id", b.AccountID}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(OrgChange, "%v", err)
		}
	}
	if b.Op != "erased" {
		return invalid(OrgChange, "op must be erased")
	}
	return nil
}

// DeviceChangeBody tells an account's devices that its device DeviceID
// changed: Op "key" means the device now holds a new key (and
// certificate), and every session made with the old one has ended. A
// change nobody on the account asked for means the account is in someone
// else's hands.
type DeviceChangeBody struct {
	AccountID string `json:"account_id"`
	DeviceID  string `json:"device_id"`
	Op        string `json:"op"`
}

func (*DeviceChangeBody) Kind() Kind { return DeviceChange }
func (b *DeviceChangeBody) Validate() error {
	for _, f := range []struct{ name, v string }{{"account_id", b.AccountID}, {"device_id", b.DeviceID}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(DeviceChange, "%v", err)
		}
	}
	if b.Op != "key" {
		return invalid(DeviceChange, "op must be key")
	}
	return nil
}
