package messaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Notices are envelopes the server writes itself: a group's membership
// changed, a payment was received, a device of the account changed its
// key, a case opened by a form submission changed its status. They carry facts the server holds
// anyway, so they are not encrypted, but they are signed: the envelope's
// ciphertext field holds a NoticeBody in JSON — a statement and the
// deployment notary's signature of it — and its sender is NoticeSender,
// which no device id can be (identity's ids start with "dev_").
//
// Anyone who can write the database or publish on the bus can put an
// envelope "from kanal" into a mailbox, so a client believes a notice
// only when the notary's signature checks out against the CA it trusts,
// its kind is one the server sends (NoticeKind), and the statement names
// the device reading it and the conversation it arrived in. The signed
// statement binds all of these (docs/api-messaging.md, "Notices", gives
// its bytes), so a real notice cannot be replayed to another device, into
// another conversation or as another kind.
//
// Every notice is sealed by sealNotices, whichever path posts it.

// NoticeSender is the sender "device" of a notice.
const NoticeSender = "kanal"

// NoticeKind reports whether the server may send notices of kind k: the
// allow-list both the server (it refuses to post any other kind) and the
// SDK (it refuses any other kind "from kanal") hold. A new notice kind is
// added here and nowhere else.
func NoticeKind(k kind.Kind) bool {
	switch k {
	case kind.GroupChange, kind.PaymentStatus, kind.DeviceChange, kind.CaseStatus, kind.AppPost, kind.DocumentWithdrawn, kind.FormRequest, kind.OrgChange:
		return true
	}
	return false
}

// NoticePurpose is the notary purpose of a notice of kind k: part of the
// signed bytes, so a signature over one kind never verifies as another.
func NoticePurpose(k kind.Kind) string { return "messaging.notice." + string(k) }

// NoticeBody is what a notice envelope carries.
type NoticeBody struct {
	// Statement is a NoticeStatement in its text form, the signed bytes.
	Statement []byte `json:"statement"`
	// Signature is the notary's Ed25519 signature of the statement for
	// NoticePurpose of its kind (identity/ca's Notary.Sign).
	Signature []byte `json:"signature"`
	// Notary is the notary certificate (DER), issued by the deployment CA.
	Notary []byte `json:"notary_certificate"`
}

// NoticeStatement is what the notary signs: one notice, for one device.
type NoticeStatement struct {
	ID           string    // the notice's id, the same for every device it went to
	Time         time.Time // when the server stated it, to the millisecond
	Kind         kind.Kind // the message's kind
	Recipient    string    // the device it is for
	Conversation string    // the conversation it belongs to
	Message      []byte    // a kind.Message of Kind, JSON
}

// Errors of notice statements.
var ErrBadNotice = errors.New("messaging: malformed notice statement")

// noticeMagic is the first line of a statement; noticeTime its time format
// (RFC 3339, UTC, always three digits of milliseconds).
const (
	noticeMagic = "kanal notice v1"
	noticeTime  = "2006-01-02T15:04:05.000Z"
)

// Marshal returns the statement's text form:
//
//	kanal notice v1
//	id <ID>
//	time <Time>
//	kind <Kind>
//	recipient <Recipient>
//	conversation <Conversation>
//	<empty line>
//	<Message>
//
// Each line ends with a newline; Message follows the empty line to the end.
func (s *NoticeStatement) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(noticeMagic + "\n")
	b.WriteString("id " + s.ID + "\n")
	b.WriteString("time " + s.Time.UTC().Format(noticeTime) + "\n")
	b.WriteString("kind " + string(s.Kind) + "\n")
	b.WriteString("recipient " + s.Recipient + "\n")
	b.WriteString("conversation " + s.Conversation + "\n")
	b.WriteString("\n")
	b.Write(s.Message)
	return b.Bytes()
}

// ParseNoticeStatement parses a statement's text form. It accepts only the
// one form Marshal writes, so the bytes that were signed are the bytes
// that are read. It checks the form, not the signature, and not that
// Message is a valid kind.Message.
func ParseNoticeStatement(b []byte) (*NoticeStatement, error) {
	if len(b) > MaxNoticeBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadNotice, MaxNoticeBytes)
	}
	head, msg, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no empty line after the header", ErrBadNotice)
	}
	lines := strings.Split(string(head), "\n")
	labels := []string{"", "id", "time", "kind", "recipient", "conversation"}
	if len(lines) != len(labels) || lines[0] != noticeMagic {
		return nil, fmt.Errorf("%w: want %q and %d header lines", ErrBadNotice, noticeMagic, len(labels)-1)
	}
	vals := make([]string, len(labels))
	for i := 1; i < len(labels); i++ {
		v, ok := strings.CutPrefix(lines[i], labels[i]+" ")
		if !ok || !noticeField(v) {
			return nil, fmt.Errorf("%w: line %d: want %q and a value", ErrBadNotice, i+1, labels[i])
		}
		vals[i] = v
	}
	at, err := time.Parse(noticeTime, vals[2])
	if err != nil {
		return nil, fmt.Errorf("%w: time: %v", ErrBadNotice, err)
	}
	s := &NoticeStatement{ID: vals[1], Time: at, Kind: kind.Kind(vals[3]), Recipient: vals[4], Conversation: vals[5],
		Message: bytes.Clone(msg)}
	if !bytes.Equal(s.Marshal(), b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrBadNotice)
	}
	return s, nil
}

// noticeField reports whether v may be a header value: 1 to 64 printable
// ASCII characters, no space.
func noticeField(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// Notice is a message from the server to the devices of some accounts and
// of an organisation's agents, in a conversation.
type Notice struct {
	Accounts     []string // every active device of these accounts
	OrgID        string   // and every active agent device of this organisation ("": none)
	Conversation string   // a conversation id (DirectConversation, OrgConversation, a group id)
	Message      []byte   // a kind.Message, JSON; validated with kind.Unmarshal
}

// newMessageID returns a random id for a message the server writes.
func newMessageID() string { return "kanal_" + randomID() }

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sealNotices returns the envelopes of notice m in conversation for each
// of devices, each with a statement for that device signed by the notary.
// It is the one place notices are made: a kind that is not on the
// allow-list is refused here.
func (s *Service) sealNotices(conversation string, m *kind.Message, devices []string) ([]mailbox.Envelope, error) {
	if s.notary == nil {
		return nil, errors.New("messaging.notice: needs Options.Notary")
	}
	if !NoticeKind(m.Kind) {
		return nil, fmt.Errorf("%w: notice: the server does not send %s", ErrInvalid, m.Kind)
	}
	if !noticeField(conversation) {
		return nil, fmt.Errorf("%w: notice: bad conversation", ErrInvalid)
	}
	raw, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	st := NoticeStatement{ID: "ntc_" + randomID(), Time: s.now().UTC().Truncate(time.Millisecond), Kind: m.Kind,
		Conversation: conversation, Message: raw}
	purpose, cert := NoticePurpose(m.Kind), s.notary.Certificate().Raw
	envs := make([]mailbox.Envelope, len(devices))
	for i, d := range devices {
		st.Recipient = d
		signed := st.Marshal()
		if len(signed) > MaxNoticeBytes {
			return nil, fmt.Errorf("%w: notice longer than %d bytes", ErrInvalid, MaxNoticeBytes)
		}
		body, err := json.Marshal(NoticeBody{Statement: signed, Signature: s.notary.Sign(purpose, signed), Notary: cert})
		if err != nil {
			return nil, err
		}
		envs[i] = mailbox.Envelope{Conversation: conversation, Sender: NoticeSender, Recipient: d,
			Class: string(m.Class()), Ciphertext: body}
	}
	return envs, nil
}

// PostNotice stores a notice in the mailbox of every device it names, in
// one transaction, and wakes them. Other domains reach it through an
// adapter in cmd/kanald (payments announces payment.status this way).
func (s *Service) PostNotice(ctx context.Context, n Notice) error {
	if s.mailbox == nil {
		return fmt.Errorf("messaging.notice: needs Options.Mailbox")
	}
	m, err := kind.Unmarshal(n.Message)
	if err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	if n.Conversation == "" || len(n.Conversation) > 64 {
		return fmt.Errorf("%w: notice: bad conversation", ErrInvalid)
	}
	set := map[string]bool{}
	ds, err := s.dir.DevicesOf(ctx, n.Accounts)
	if err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	for _, d := range ds {
		set[d.DeviceID] = true
	}
	if n.OrgID != "" {
		_, ds, err := s.dir.OrgAgents(ctx, n.OrgID)
		if err != nil {
			return fmt.Errorf("messaging.notice: %w", err)
		}
		for _, d := range ds {
			set[d.DeviceID] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	devices := make([]string, 0, len(set))
	for d := range set {
		devices = append(devices, d)
	}
	sort.Strings(devices)
	envs, err := s.sealNotices(n.Conversation, m, devices)
	if err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	if err := s.mailbox.Append(ctx, envs); err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	if s.notify != nil {
		s.notify(devices...)
	}
	return nil
}
