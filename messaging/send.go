package messaging

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// The send path: POST /v1/messages stores one ciphertext per device of a
// direct (account ↔ account) or organisation (citizen ↔ organisation)
// conversation, in one transaction with an idempotency row, and then tells
// the hub which mailboxes have something new.

// Problem types of the send path.
var (
	// TypeStaleDevices: the envelopes do not address exactly the devices
	// that must receive the message. Extension members "missing" (active
	// devices without an envelope) and "stale" (envelopes for devices that
	// are not, or no longer, active recipients), each a sorted list of
	// device ids, and "devices", the full current set to address. Nothing
	// was stored: claim bundles for the missing devices, drop the stale
	// ones, and retry with the same client_id. Extension member "accounts"
	// maps each device in "devices" to its account, so a client knows
	// whose bundle to claim.
	TypeStaleDevices = web.NewType("stale-devices")
	// TypeClientIDReused: the client_id already named a send to another
	// conversation.
	TypeClientIDReused = web.NewType("client-id-reused")
	// TypeNoRecipients: nobody but the sending device is in the
	// conversation (a group whose other members have no active device).
	TypeNoRecipients = web.NewType("no-recipients")
	// TypeMailboxFull: the send would take a recipient device's mailbox
	// past its quota (MaxMailboxEnvelopes, MaxMailboxBytes). Extension
	// member "devices": the full devices, sorted. Nothing was stored, for
	// any recipient; retry later, when the device has read its mailbox.
	TypeMailboxFull = web.NewType("mailbox-full")
	// TypeOverloaded (503, with Retry-After and the extension member
	// "retry_after" in seconds): more sends are in flight than
	// Options.Admission allows, or the group commit (Options.Batcher)
	// holds more than its own bound — each about as much as the node
	// answers or commits in a few seconds. Nothing was
	// stored; send again with the same client_id after retry_after
	// seconds. A retry of a send that was stored before may be refused
	// like this too; once admitted it gets the first answer.
	TypeOverloaded = web.NewType("overloaded")
)

// SendRequest is the body of POST /v1/messages (any session).
type SendRequest struct {
	To SendTo `json:"to"`
	// ClientID is the sender's own id for this message, 1..64 characters
	// of [A-Za-z0-9_-], unique per sending device. A retry with the same
	// ClientID returns the first answer and stores nothing.
	ClientID string `json:"client_id"`
	// Class is the coarse kind.Class: message, receipt or transaction.
	Class string `json:"class"`
	// Envelopes carries one ciphertext for each device that must receive
	// it: every active device of the recipient (for an organisation, every
	// active agent device) and the sender's own other active devices.
	Envelopes []SendEnvelope `json:"envelopes"`
}

// SendTo names the other side. AccountID alone: a direct conversation.
// OrgID alone: the caller's conversation with an organisation. Both: an
// agent of the organisation answering the citizen AccountID in that
// conversation; the sending device must be one of the organisation's
// active agent devices, and the other agent devices get a copy too.
// GroupID alone: a group the caller is a member of; every active device
// of every member gets the message.
type SendTo struct {
	AccountID string `json:"account_id,omitempty"`
	OrgID     string `json:"org_id,omitempty"`
	GroupID   string `json:"group_id,omitempty"`
}

// SendEnvelope is one device's ciphertext, standard base64 (padded) of at
// most mailbox.MaxCiphertext bytes.
type SendEnvelope struct {
	DeviceID   string `json:"device_id"`
	Ciphertext string `json:"ciphertext"`
	// Data is the ciphertext as bytes, as a binary send frame carries it
	// (no base64). When it is set, Ciphertext is ignored; over HTTP and
	// in JSON frames it is never set.
	Data []byte `json:"-"`
}

// SendResponse answers an accepted send: 201 the first time, 200 with the
// same body for a retry with the same client_id.
type SendResponse struct {
	ConversationID string            `json:"conversation_id"`
	ClientID       string            `json:"client_id"`
	ServerTime     time.Time         `json:"server_ts"`
	EnvelopeIDs    map[string]string `json:"envelope_ids"` // device id → mailbox envelope id

	// encoded is json.Marshal of the response, kept from the send that
	// made it (its idempotency row holds the same bytes), so that the
	// HTTP answer is not encoded a second time; empty where the response
	// came from elsewhere (a retry's stored answer, a decoded frame).
	encoded string
}

// DirectConversation returns the id of the conversation between two
// accounts: "d_" and the first 32 hex digits of SHA-256 over the two
// account ids, sorted, joined by a NUL byte. Both sides derive the same id.
func DirectConversation(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return conversationID("d_", a, b)
}

// conversationID is prefix and the first 32 hex digits of SHA-256 over a,
// a NUL byte and b, built in one allocation: every send derives its
// conversation's id.
func conversationID(prefix, a, b string) string {
	var in [2*128 + 1]byte // ids of up to 128 bytes (checkSend's bound) fit; longer ones cost an allocation
	h := sha256.Sum256(append(append(append(in[:0], a...), 0), b...))
	var out [2 + 32]byte
	return string(hex.AppendEncode(append(out[:0], prefix...), h[:16]))
}

// OrgConversation returns the id of the conversation between an
// organisation and a citizen account: "o_" and the first 32 hex digits of
// SHA-256 over org id, a NUL byte, and the account id.
func OrgConversation(orgID, accountID string) string {
	return conversationID("o_", orgID, accountID)
}

// OrgStaffConversation returns the id of the conversation in which the
// server tells an organisation's agents about the organisation itself
// (org.change notices): "s_" and the first 32 hex digits of SHA-256 over
// "staff", a NUL byte, and the organisation id.
func OrgStaffConversation(orgID string) string {
	h := sha256.Sum256([]byte("staff\x00" + orgID))
	return "s_" + hex.EncodeToString(h[:])[:32]
}

// checkedSend is a statically valid SendRequest.
type checkedSend struct {
	conversation string
	envs         []mailbox.Envelope // sorted by recipient
	devices      []string           // sorted
}

func checkSend(c Caller, req *SendRequest) (*checkedSend, error) {
	if !mailbox.ValidDeviceID(req.ClientID) {
		return nil, fmt.Errorf("%w: client_id must be 1..64 characters of [A-Za-z0-9_-]", ErrInvalid)
	}
	switch kind.Class(req.Class) {
	case kind.ClassMessage, kind.ClassReceipt, kind.ClassTransaction:
	default:
		return nil, fmt.Errorf("%w: class must be message, receipt or transaction", ErrInvalid)
	}
	var cs checkedSend
	to := req.To
	switch {
	case to.GroupID != "" && (to.AccountID != "" || to.OrgID != ""):
		return nil, fmt.Errorf("%w: to: group_id alone, or account_id, org_id or both", ErrInvalid)
	case to.GroupID != "":
		if !ValidGroupID(to.GroupID) {
			return nil, fmt.Errorf("%w: to.group_id: malformed", ErrInvalid)
		}
		cs.conversation = to.GroupID
	case to.AccountID == "" && to.OrgID == "":
		return nil, fmt.Errorf("%w: to: account_id, org_id, both, or group_id", ErrInvalid)
	case len(to.AccountID) > 128:
		return nil, fmt.Errorf("%w: to.account_id: too long", ErrInvalid)
	case len(to.OrgID) > 128:
		return nil, fmt.Errorf("%w: to.org_id: too long", ErrInvalid)
	case to.AccountID == c.AccountID:
		return nil, fmt.Errorf("%w: to.account_id: your own devices are synced by every send; there is no conversation with yourself", ErrInvalid)
	case to.OrgID == "":
		cs.conversation = DirectConversation(c.AccountID, to.AccountID)
	case to.AccountID == "":
		cs.conversation = OrgConversation(to.OrgID, c.AccountID)
	default:
		cs.conversation = OrgConversation(to.OrgID, to.AccountID)
	}
	// No envelopes at all is allowed: it is how a client asks for the
	// device list, answered with a stale-devices problem.
	if len(req.Envelopes) > MaxSendDevices {
		return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Too many envelopes",
			"a send carries at most %d envelopes", MaxSendDevices)
	}
	cs.envs = make([]mailbox.Envelope, 0, len(req.Envelopes))
	cs.devices = make([]string, 0, len(req.Envelopes))
	seen := map[string]bool{}
	for i, e := range req.Envelopes {
		if !mailbox.ValidDeviceID(e.DeviceID) {
			return nil, fmt.Errorf("%w: envelopes[%d].device_id: bad device id", ErrInvalid, i)
		}
		if seen[e.DeviceID] {
			return nil, fmt.Errorf("%w: envelopes[%d].device_id: %s appears twice", ErrInvalid, i, e.DeviceID)
		}
		seen[e.DeviceID] = true
		ct := e.Data
		if ct == nil {
			if base64.StdEncoding.DecodedLen(len(e.Ciphertext)) > mailbox.MaxCiphertext+3 {
				return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Ciphertext too large",
					"envelopes[%d].ciphertext: at most %d bytes", i, mailbox.MaxCiphertext)
			}
			var err error
			if ct, err = base64.StdEncoding.Strict().DecodeString(e.Ciphertext); err != nil {
				return nil, fmt.Errorf("%w: envelopes[%d].ciphertext: not standard base64", ErrInvalid, i)
			}
		}
		if len(ct) == 0 {
			return nil, fmt.Errorf("%w: envelopes[%d].ciphertext: empty", ErrInvalid, i)
		}
		if len(ct) > mailbox.MaxCiphertext {
			return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Ciphertext too large",
				"envelopes[%d].ciphertext: at most %d bytes", i, mailbox.MaxCiphertext)
		}
		cs.envs = append(cs.envs, mailbox.Envelope{Conversation: cs.conversation, Sender: c.DeviceID,
			Recipient: e.DeviceID, Class: req.Class, Ciphertext: ct})
		cs.devices = append(cs.devices, e.DeviceID)
	}
	slices.SortFunc(cs.envs, func(a, b mailbox.Envelope) int { return strings.Compare(a.Recipient, b.Recipient) })
	slices.Sort(cs.devices)
	return &cs, nil
}

// requiredDevices returns the devices a send from c to req.To must
// address, sorted by id: the recipient account's active devices, the
// organisation's active agent devices, or every member's, and the
// caller's own other active devices — each only once it has published
// its keys.
//
// With fresh, every set is read from the database; else sets this node
// keeps in memory serve (cached says whether any did).
func (s *Service) requiredDevices(ctx context.Context, c Caller, to SendTo, fresh bool) (required []Device, cached bool, err error) {
	// The accounts whose devices are addressed, the sender's own among
	// them, are looked up at once (in this node's memory, or in one query
	// each to the directory and the identities table).
	accounts := make([]string, 1, 2)
	accounts[0] = c.AccountID
	if to.GroupID != "" {
		members, err := s.groupMembers(ctx, c, to.GroupID)
		if err != nil {
			return nil, false, err
		}
		for _, a := range members {
			if a != c.AccountID {
				accounts = append(accounts, a)
			}
		}
	}
	if to.AccountID != "" && to.AccountID != c.AccountID {
		accounts = append(accounts, to.AccountID)
	}
	theirs, cached, err := s.activeDevices(ctx, accounts, fresh)
	if err != nil {
		return nil, false, err
	}
	if to.AccountID != "" && !slices.ContainsFunc(theirs, func(d activeDevice) bool { return d.AccountID == to.AccountID }) {
		return nil, false, web.Errorf(http.StatusNotFound, TypeUnknownRecipient, "Unknown recipient",
			"account %s has no active devices", to.AccountID)
	}
	if to.OrgID == "" {
		// No agents to merge: sorting is enough, and a device listed
		// twice (were an account asked twice) is kept once.
		out := make([]Device, 0, len(theirs))
		for _, d := range theirs {
			if d.DeviceID != c.DeviceID && d.published {
				out = append(out, d.Device)
			}
		}
		slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.DeviceID, b.DeviceID) })
		return slices.CompactFunc(out, func(a, b Device) bool { return a.DeviceID == b.DeviceID }), cached, nil
	}
	set := map[string]Device{}
	_, ds, err := s.dir.OrgAgents(ctx, to.OrgID)
	if err != nil {
		return nil, false, err
	}
	if len(ds) == 0 {
		return nil, false, web.Errorf(http.StatusNotFound, TypeUnknownRecipient, "Unknown recipient",
			"organisation %s has no active agent devices", to.OrgID)
	}
	if to.AccountID != "" && !slices.ContainsFunc(ds, func(d Device) bool { return d.DeviceID == c.DeviceID }) {
		return nil, false, web.Errorf(http.StatusForbidden, web.TypeForbidden, "Not an agent",
			"only an agent device of organisation %s may send in its name", to.OrgID)
	}
	for _, d := range ds {
		if d.DeviceID != c.DeviceID {
			set[d.DeviceID] = d
		}
	}
	// Agents are not in the cached sets: which of them published is
	// asked here.
	published, err := s.published(ctx, set)
	if err != nil {
		return nil, false, err
	}
	for id := range set {
		if !published[id] {
			delete(set, id)
		}
	}
	for _, d := range theirs {
		if d.DeviceID != c.DeviceID && d.published {
			set[d.DeviceID] = d.Device
		}
	}
	out := make([]Device, 0, len(set))
	for _, d := range set {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	return out, cached, nil
}

// sameDevices reports whether the required devices are exactly the
// addressed ones (sorted).
func sameDevices(required []Device, addressed []string) bool {
	if len(required) != len(addressed) {
		return false
	}
	for i, d := range required {
		if d.DeviceID != addressed[i] {
			return false
		}
	}
	return true
}

// published returns which of the devices have published their identity.
func (s *Service) published(ctx context.Context, set map[string]Device) (map[string]bool, error) {
	out := make(map[string]bool, len(set))
	if len(set) == 0 {
		return out, nil
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	in, args := db.In(ids)
	rows, err := s.db.Query(ctx, `SELECT device_id FROM messaging_identities WHERE device_id IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("messaging.send: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("messaging.send: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// diff returns the sorted elements of want not in got, and of got not in
// want; both inputs are sorted.
func diff(want, got []string) (missing, stale []string) {
	missing, stale = []string{}, []string{}
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			stale = append(stale, g)
		}
	}
	return missing, stale
}

// Send stores a message for every device that must receive it, or returns
// the first answer of an earlier send with the same client_id (created
// false). See SendRequest.
//
// The idempotency check rides on the insert: the send's row has the key
// (sender device, client_id), so a retry of a committed send fails the
// insert, and only then is the first answer read. A retry must get that
// answer even when the fresh path would refuse it — the device set has
// changed since, the device used up its send limit, a mailbox is full —
// so every refusal looks for an earlier send first, and a retry gives
// back the send it was counted as. A send that goes through pays no read
// for this.
func (s *Service) Send(ctx context.Context, c Caller, req *SendRequest) (resp *SendResponse, created bool, err error) {
	if s.mailbox == nil {
		return nil, false, errors.New("messaging: sends need Options.Mailbox")
	}
	cs, err := checkSend(c, req)
	if err != nil {
		return nil, false, err
	}
	// Refused before anything is read or counted, when the group commit
	// is already too deep to take it: a refusal must cost little.
	if s.batch != nil {
		if err := s.batch.Admit(); err != nil {
			return nil, false, err
		}
	}
	counted := false
	resp, counted, err = s.sendFresh(ctx, c, req, cs)
	if err == nil {
		return resp, true, nil
	}
	if errors.Is(err, db.ErrOverloaded) {
		if counted {
			s.limit.refund(c.DeviceID, s.now())
		}
		return nil, false, err
	}
	var p *web.Problem
	var rl *RateLimitError
	var full *mailbox.FullError
	if errors.As(err, &p) || errors.As(err, &rl) || errors.As(err, &full) || db.IsUniqueViolation(err) {
		prev, perr := s.previousSend(ctx, c.DeviceID, req.ClientID, cs.conversation)
		if prev != nil || perr != nil {
			if counted {
				s.limit.refund(c.DeviceID, s.now())
			}
			return prev, false, perr
		}
	}
	if errors.As(err, &full) {
		return nil, false, web.Errorf(http.StatusInsufficientStorage, TypeMailboxFull, "Mailbox full",
			"a recipient device's mailbox is full until it reads its messages; nothing was sent, try again later").
			With("devices", full.Devices)
	}
	if p != nil || rl != nil {
		return nil, false, err
	}
	return nil, false, fmt.Errorf("messaging.send: %w", err)
}

// sendFresh is a send that no earlier attempt answered; counted says the
// send limit counted it.
func (s *Service) sendFresh(ctx context.Context, c Caller, req *SendRequest, cs *checkedSend) (resp *SendResponse, counted bool, err error) {
	if err := s.limit.allow(c.DeviceID, s.now()); err != nil {
		return nil, true, err // allow counts refused sends too
	}
	required, cached, err := s.requiredDevices(ctx, c, req.To, false)
	if err != nil {
		return nil, true, err
	}
	if cached && !sameDevices(required, cs.devices) {
		// The envelopes may know of a device this node's memory does not
		// yet (it published on another node): ask the database before
		// calling the list stale.
		if required, _, err = s.requiredDevices(ctx, c, req.To, true); err != nil {
			return nil, true, err
		}
	}
	if len(required) == 0 {
		return nil, true, web.Errorf(http.StatusUnprocessableEntity, TypeNoRecipients, "No recipients",
			"the conversation has no active device besides the sending one")
	}
	if !sameDevices(required, cs.devices) {
		want := make([]string, len(required))
		accounts := make(map[string]string, len(required))
		for i, d := range required {
			want[i] = d.DeviceID
			accounts[d.DeviceID] = d.AccountID
		}
		missing, stale := diff(want, cs.devices)
		return nil, true, web.Errorf(http.StatusConflict, TypeStaleDevices, "Stale devices",
			"the envelopes must address exactly the active devices of the conversation other than the sending one").
			With("missing", missing).With("stale", stale).With("devices", want).With("accounts", accounts)
	}
	p := &pendingSend{caller: c, clientID: req.ClientID, cs: cs, now: s.now()}
	fn := func(tx *sql.Tx) error { return s.writeSends(ctx, tx, []*pendingSend{p}) }
	if s.batch != nil {
		err = s.batch.TryDoMerged(ctx, sendMerger{s}, p, fn)
	} else {
		err = s.db.Tx(ctx, fn)
	}
	if err != nil {
		return nil, true, err
	}
	switch {
	case s.stored != nil:
		s.stored(p.stored)
	case s.notify != nil:
		s.notify(cs.devices...)
	}
	return p.resp, true, nil
}

// pendingSend is a checked send on its way into the database; writeSends
// fills in resp and stored.
type pendingSend struct {
	caller   Caller
	clientID string
	cs       *checkedSend
	now      time.Time

	resp   *SendResponse
	stored []mailbox.Envelope
}

// sendMerger writes the sends of one group commit together (see
// db.Merger): their envelopes in one append, their idempotency rows in one
// insert, rather than three statements per send.
type sendMerger struct{ s *Service }

func (m sendMerger) MergeTx(ctx context.Context, tx *sql.Tx, items []any) error {
	ps := make([]*pendingSend, len(items))
	for i, it := range items {
		ps[i] = it.(*pendingSend)
	}
	return m.s.writeSends(ctx, tx, ps)
}

// Idempotency rows per insert statement, five parameters each.
const sendsPerStatement = 128

var _ [db.MaxParams - 5*sendsPerStatement]struct{}

// writeSends stores the sends' envelopes and idempotency rows in tx. If
// it fails, tx must be rolled back: a send whose client id was used
// before fails the insert of its idempotency row (the primary key is
// sender device and client id), and a full mailbox fails the append.
func (s *Service) writeSends(ctx context.Context, tx *sql.Tx, ps []*pendingSend) error {
	n := 0
	for _, p := range ps {
		n += len(p.cs.envs)
	}
	// One append for all: the envelopes of each recipient device keep
	// the order of the sends, which is the order they were queued in.
	all := make([]mailbox.Envelope, 0, n)
	for _, p := range ps {
		all = append(all, p.cs.envs...)
	}
	if err := s.mailbox.AppendWithinTx(ctx, tx, all, s.quota); err != nil {
		return err
	}
	rows := make([]any, 0, 5*len(ps))
	if err := answerSends(ps, all, func(p *pendingSend, result string) {
		rows = append(rows, p.caller.DeviceID, p.clientID, p.cs.conversation, result, p.now.Unix())
	}); err != nil {
		return err
	}
	// The primary key (sender_device, client_id) refuses a second send
	// with a client id; Send then returns the first answer.
	for len(rows) > 0 {
		n := db.Rows(len(rows)/5, sendsPerStatement)
		q := `INSERT INTO messaging_sends (sender_device, client_id, conversation, result, created_at) VALUES ` + db.Values(n, 5)
		if _, err := tx.ExecContext(ctx, q, rows[:5*n]...); err != nil {
			return err
		}
		rows = rows[5*n:]
	}
	return nil
}

// answerSends fills in each send's answer and stored envelopes from all,
// the envelopes of ps in order with their ids and server time, and hands
// each send with its answer as JSON to row, for its idempotency row.
func answerSends(ps []*pendingSend, all []mailbox.Envelope, row func(p *pendingSend, result string)) error {
	for _, p := range ps {
		envs := all[:len(p.cs.envs):len(p.cs.envs)]
		all = all[len(envs):]
		r := &SendResponse{ConversationID: p.cs.conversation, ClientID: p.clientID,
			ServerTime: envs[0].ServerTime, EnvelopeIDs: make(map[string]string, len(envs))}
		for _, e := range envs {
			r.EnvelopeIDs[e.Recipient] = e.ID
		}
		j, err := sendResultJSON(r, envs)
		if err != nil {
			return err
		}
		r.encoded = j
		p.resp, p.stored = r, envs
		row(p, j)
	}
	return nil
}

// sendResultJSON is json.Marshal(r) as a string, written without
// reflection when every string in it needs no escaping — conversation,
// client, device and envelope ids are of [A-Za-z0-9_-] — and by
// encoding/json otherwise. envs are r's envelopes, sorted by recipient
// (the order json.Marshal gives a map's keys), one per recipient.
func sendResultJSON(r *SendResponse, envs []mailbox.Envelope) (string, error) {
	plain := jsonPlain(r.ConversationID) && jsonPlain(r.ClientID) && len(envs) == len(r.EnvelopeIDs) &&
		r.ServerTime.Year() >= 0 && r.ServerTime.Year() <= 9999
	for i := 0; plain && i < len(envs); i++ {
		plain = jsonPlain(envs[i].Recipient) && jsonPlain(envs[i].ID) && (i == 0 || envs[i-1].Recipient < envs[i].Recipient)
	}
	if !plain {
		j, err := json.Marshal(r)
		return string(j), err
	}
	b := make([]byte, 0, 96+64*len(envs))
	b = append(b, `{"conversation_id":"`...)
	b = append(b, r.ConversationID...)
	b = append(b, `","client_id":"`...)
	b = append(b, r.ClientID...)
	b = append(b, `","server_ts":"`...)
	b = r.ServerTime.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","envelope_ids":{`...)
	for i, e := range envs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, e.Recipient...)
		b = append(b, `":"`...)
		b = append(b, e.ID...)
		b = append(b, '"')
	}
	b = append(b, "}}"...)
	return string(b), nil
}

// jsonPlain reports whether s is a JSON string's contents as it is:
// printable ASCII that encoding/json does not escape.
func jsonPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

var (
	_ db.Pipeliner = sendMerger{}
	_ db.Locker    = sendMerger{}
)

// LockItems asks ls for the mailbox head rows of a commit's sends
// (db.Locker), which the batch locks in one ordered pass.
func (m sendMerger) LockItems(ls *db.Locks, items []any) {
	for _, it := range items {
		m.s.mailbox.LockAppend(ls, it.(*pendingSend).cs.envs)
	}
}

// QueueTx queues a commit's sends on a PostgreSQL pipeline
// (db.Pipeliner): one append for all their envelopes, one insert of
// their idempotency rows, as writeSends writes them.
func (m sendMerger) QueueTx(pl *db.Pipeline, items []any) error {
	ps := make([]*pendingSend, len(items))
	n := 0
	for i, it := range items {
		ps[i] = it.(*pendingSend)
		n += len(ps[i].cs.envs)
	}
	all := make([]mailbox.Envelope, 0, n)
	for _, p := range ps {
		all = append(all, p.cs.envs...)
	}
	if err := m.s.mailbox.QueueAppend(pl, all, m.s.quota); err != nil {
		return err
	}
	devices, clients, convs, results := make([]string, 0, len(ps)), make([]string, 0, len(ps)), make([]string, 0, len(ps)), make([]string, 0, len(ps))
	created := make([]int64, 0, len(ps))
	if err := answerSends(ps, all, func(p *pendingSend, result string) {
		devices, clients, convs, results = append(devices, p.caller.DeviceID), append(clients, p.clientID), append(convs, p.cs.conversation), append(results, result)
		created = append(created, p.now.Unix())
	}); err != nil {
		return err
	}
	pl.Query(sendsSQL, []any{devices, clients, convs, results, created}, nil)
	return nil
}

// sendsSQL inserts a commit's idempotency rows from arrays: it reads no
// table, and its plan, made once per connection (db.Pipeline.Query),
// holds for any size.
const sendsSQL = `INSERT INTO messaging_sends (sender_device, client_id, conversation, result, created_at)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])`

// ExpireSends deletes idempotency rows older than SendIdempotency and
// returns how many. kanald's expiry sweep calls it; deleting them in every
// send instead cost a scan of the device's rows per send.
func (s *Service) ExpireSends(ctx context.Context) (int64, error) {
	r, err := s.db.Exec(ctx, `DELETE FROM messaging_sends WHERE created_at < $1`, s.now().Add(-SendIdempotency).Unix())
	if err != nil {
		return 0, fmt.Errorf("messaging.send: %w", err)
	}
	return r.RowsAffected()
}

// previousSend returns the stored answer of the device's send with this
// client id, nil if there is none.
func (s *Service) previousSend(ctx context.Context, device, clientID, conversation string) (*SendResponse, error) {
	var conv, result string
	err := s.db.QueryRow(ctx, `SELECT conversation, result FROM messaging_sends WHERE sender_device = $1 AND client_id = $2`,
		device, clientID).Scan(&conv, &result)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("messaging.send: %w", err)
	}
	if conv != conversation {
		return nil, web.Errorf(http.StatusConflict, TypeClientIDReused, "Client id reused",
			"client_id %s already named a message in another conversation", clientID)
	}
	var r SendResponse
	if err := json.Unmarshal([]byte(result), &r); err != nil {
		return nil, fmt.Errorf("messaging.send: stored result: %w", err)
	}
	return &r, nil
}

func (s *Service) handleSend(w http.ResponseWriter, r *http.Request, c Caller) error {
	req, err := decodeSendBody(w, r)
	if err != nil {
		return err
	}
	if err := web.CheckIdempotencyKey(r.Header, req.ClientID, "the body's client_id"); err != nil {
		return err
	}
	leave, err := s.gate.enter()
	var resp *SendResponse
	created := false
	if err == nil {
		resp, created, err = s.Send(r.Context(), c, req)
		leave()
	}
	var rl *RateLimitError
	var ol *db.OverloadError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(rl.RetryAfter)))
	case errors.As(err, &ol):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(ol.RetryAfter)))
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("Cache-Control", "no-store")
	if resp.encoded != "" {
		web.WriteEncodedJSON(w, status, resp.encoded)
		return nil
	}
	web.WriteJSON(w, status, resp)
	return nil
}

// BinarySendType is the media type of a send body in binary form: a
// kanal.bin.v1 send frame (AppendSendFrame) with an empty ref, the
// ciphertexts as bytes. It is the stream's binary send frame, accepted
// over HTTP for the same reason: no base64 to decode, no JSON to parse.
const BinarySendType = "application/vnd.kanal.bin.v1"

// decodeSendBody reads the body of POST /v1/messages: JSON (strict, as
// every body), or a binary send frame with Content-Type BinarySendType.
// Both are bounded by maxSendBody; a bad body is a problem and changes
// nothing.
func decodeSendBody(w http.ResponseWriter, r *http.Request) (*SendRequest, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != BinarySendType {
		var req SendRequest
		if err := web.DecodeJSON(w, r, &req, maxSendBody); err != nil {
			return nil, err
		}
		return &req, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSendBody))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Request too large",
			"the body must be at most %d bytes", maxSendBody)
	case err != nil:
		return nil, fmt.Errorf("%w: the body could not be read", ErrInvalid)
	}
	ref, req, err := DecodeSendFrame(body)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s body: %v", ErrInvalid, BinarySendType, err)
	case ref != "":
		return nil, fmt.Errorf("%w: %s body: the ref must be empty over HTTP", ErrInvalid, BinarySendType)
	}
	return req, nil
}

// IdempotencyKeyHeader is the request header that lets an HTTP client
// repeat a send by itself (web.IdempotencyKeyHeader). On a send its value,
// if sent, is the body's client_id, the key the server deduplicates by (as
// with the payments' creates, the key itself, not a quoted string): a
// second send with the same client_id stores nothing and gets the first
// answer.
const IdempotencyKeyHeader = web.IdempotencyKeyHeader

// retryAfterSeconds is d in whole seconds for Retry-After, rounded up, at
// least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(int(d.Seconds()+0.999), 1)
}
