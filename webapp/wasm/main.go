//go:build js && wasm

// Command wasm is kanal's client SDK compiled to WebAssembly for the web
// app (webapp/static): the same PQXDH, Double Ratchet and certificate
// checks as the CLI, with a small JavaScript shell (app.js) for the page,
// IndexedDB and the device's WebCrypto signing key. Build it with
// go generate ./webapp.
//
// It registers globalThis.kanalGo, whose functions return Promises that
// resolve to JSON strings (docs/web.md lists them).
package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall/js"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

func main() {
	a := &app{shell: js.Global().Get("kanalShell"), base: js.Global().Get("location").Get("origin").String()}
	api := js.Global().Get("Object").New()
	for name, fn := range map[string]func([]js.Value) (any, error){
		"signup":  a.signup,
		"verify":  a.verify,
		"enrol":   a.enrol,
		"unlock":  a.unlock,
		"me":      a.me,
		"history": a.history,
		"send":    a.send,
		"listen":  a.listen,
		"orgName": a.orgName,
		// push.go
		"pushSubscription": a.pushSubscription,
		// participate.go
		"survey":      a.survey,
		"vote":        a.vote,
		"offer":       a.offer,
		"acceptOffer": a.acceptOffer,
		"payment":     a.payment,
		// pair.go, notice.go
		"pairRequest":        a.pairRequest,
		"pairInstall":        a.pairInstall,
		"requestFingerprint": a.requestFingerprint,
		"approve":            a.approve,
		"markRead":           a.markRead,
		// groups.go
		"groups":            a.groups,
		"createGroup":       a.createGroup,
		"acceptGroup":       a.acceptGroup,
		"declineGroup":      a.declineGroup,
		"leaveGroup":        a.leaveGroup,
		"addGroupMember":    a.addGroupMember,
		"removeGroupMember": a.removeGroupMember,
		"attachLimit":       a.attachLimit,
		"attach":            a.attach,
		"download":          a.download,
		// office.go
		"sendOffer":      a.sendOffer,
		"requestPayment": a.requestPayment,
		"contract":       a.contract,
		"sentPayment":    a.sentPayment,
		// forms.go
		"form":          a.form,
		"formState":     a.formState,
		"submitForm":    a.submitForm,
		"cases":         a.casesOf,
		"case":          a.caseOf,
		"setCaseStatus": a.setCaseStatus,
		"assignCase":    a.assignCase,
	} {
		api.Set(name, promise(fn))
	}
	js.Global().Set("kanalGo", api)
	a.shell.Call("ready")
	select {}
}

// state is what the device keeps about itself, encrypted in IndexedDB.
type state struct {
	Email         string   `json:"email"`
	AccountID     string   `json:"account_id"`
	DeviceID      string   `json:"device_id"`
	CertPEM       string   `json:"cert"`
	CAPEM         string   `json:"ca"`
	Intermediates []string `json:"intermediates,omitempty"`
}

const (
	nameState = "app/state"
	// The history is kept in chunks of historyChunk entries, so that one
	// message adds to one small record, not to one record of all:
	// "app/history" holds the number of the first and the last chunk,
	// "app/history/<n>" the entries.
	nameHistory   = "app/history"
	historyChunk  = 50
	maxHistory    = 1000
	maxReceiptIDs = kind.MaxReceiptIDs
)

type app struct {
	shell js.Value
	base  string

	mu       sync.Mutex
	email    string // during sign-up
	setup    string // the setup token, during sign-up
	st       *state
	store    *idbStore
	key      crypto.Signer
	token    string
	mc       *mclient.Client
	live     *mclient.LiveStream
	entries  []entry
	histBase int // the number of a.entries[0] in the kept history

	pairStore *idbStore  // the store of a pairing request not installed yet (pair.go)
	notify    js.Value   // listen's callback, for status lines (notice.go)
	groupMu   sync.Mutex // the groups' record (groups.go)
}

// entry is one message as the page shows it.
type entry struct {
	ID    string `json:"id"`
	Conv  string `json:"conv"`
	Peer  peer   `json:"peer"`           // where an answer goes
	From  string `json:"from"`           // the sender's account, or "me"
	Name  string `json:"name,omitempty"` // the sender's display name (its own claim)
	Org   string `json:"org,omitempty"`  // the organisation it spoke for, proven by certificate
	Kind  string `json:"kind"`
	Text  string `json:"text"`
	At    string `json:"at"`
	State string `json:"state,omitempty"` // my messages: sent, delivered, read
	// Body is the typed body of a message the page acts on: a survey
	// invitation, an offer, a payment request (participate.go).
	Body json.RawMessage `json:"body,omitempty"`
	// Notice is what a status line says (notice.go); Unread marks a
	// message that asked for a receipt and was not shown yet.
	Notice *noticeInfo `json:"notice,omitempty"`
	Unread bool        `json:"unread,omitempty"`
	// File is an attachment's name, size and type (groups.go); its key
	// stays in Go.
	File *fileInfo `json:"file,omitempty"`
}

type peer struct {
	Account string `json:"account,omitempty"`
	Org     string `json:"org,omitempty"`
	Group   string `json:"group,omitempty"`
}

func (p peer) sdk() mclient.Peer {
	return mclient.Peer{AccountID: p.Account, OrgID: p.Org, GroupID: p.Group}
}

func peerOf(p mclient.Peer) peer { return peer{Account: p.AccountID, Org: p.OrgID, Group: p.GroupID} }

func (a *app) ident() *idclient.Client { return idclient.New(a.base, nil) }

func (a *app) signup(args []js.Value) (any, error) {
	email := strings.TrimSpace(args[0].String())
	if !strings.Contains(email, "@") {
		return nil, errors.New("not an e-mail address")
	}
	if err := a.ident().Signup(context.Background(), email); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.email = email
	a.mu.Unlock()
	return "ok", nil
}

func (a *app) verify(args []js.Value) (any, error) {
	a.mu.Lock()
	email := a.email
	a.mu.Unlock()
	res, err := a.ident().VerifySignup(context.Background(), email, strings.TrimSpace(args[0].String()))
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.setup = res.SetupToken
	a.mu.Unlock()
	return res.AccountID, nil
}

// enrol(passphrase, deviceName, displayName): the shell has made the
// device's non-extractable Ed25519 key; this enrols its public half with
// the setup token, sets up the encrypted store and logs in.
func (a *app) enrol(args []js.Value) (any, error) {
	ctx := context.Background()
	pass, devName, display := args[0].String(), args[1].String(), args[2].String()
	a.mu.Lock()
	setup, email := a.setup, a.email
	a.mu.Unlock()
	if setup == "" {
		return nil, errors.New("verify the e-mail address first")
	}
	key, err := a.deviceKey()
	if err != nil {
		return nil, err
	}
	store, err := newStore(a.shell, pass, true)
	if err != nil {
		return nil, err
	}
	res, err := a.ident().WithToken(setup).EnrollDevice(ctx, devName, key)
	if err != nil {
		return nil, err
	}
	st := &state{Email: email, DeviceID: res.DeviceID, CertPEM: res.Certificate, CAPEM: res.CA, Intermediates: res.Intermediates}
	id, err := checkCert(st, key)
	if err != nil {
		return nil, err
	}
	st.AccountID = id.AccountID
	b, _ := json.Marshal(st)
	if err := store.Put(nameState, b); err != nil {
		return nil, err
	}
	if err := a.open(ctx, st, store, key); err != nil {
		return nil, err
	}
	if display != "" {
		if _, err := a.mc.SetProfile(display, nil); err != nil {
			return nil, err
		}
	}
	return a.meJSON(ctx)
}

// unlock(passphrase) opens the store of an enrolled browser.
func (a *app) unlock(args []js.Value) (any, error) {
	ctx := context.Background()
	store, err := newStore(a.shell, args[0].String(), false)
	if err != nil {
		return nil, err
	}
	b, err := store.Get(nameState)
	if err != nil {
		if p, err := a.pendingPairing(store); err == nil {
			return p, nil // a pairing request waits for its certificate
		}
		return nil, errWrongPassphrase
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	key, err := a.deviceKey()
	if err != nil {
		return nil, err
	}
	if _, err := checkCert(&st, key); err != nil {
		return nil, err
	}
	if err := a.open(ctx, &st, store, key); err != nil {
		return nil, err
	}
	return a.meJSON(ctx)
}

// checkCert verifies the device certificate offline, as a peer would.
func checkCert(st *state, key crypto.Signer) (ca.DeviceIdentity, error) {
	root, inters, err := st.roots()
	if err != nil {
		return ca.DeviceIdentity{}, err
	}
	pool, err := ca.TrustPool(root, inters)
	if err != nil {
		return ca.DeviceIdentity{}, err
	}
	blk, _ := pem.Decode([]byte(st.CertPEM))
	if blk == nil {
		return ca.DeviceIdentity{}, errors.New("device certificate: not PEM")
	}
	id, err := ca.VerifyDevice(blk.Bytes, pool, time.Now())
	if err != nil {
		return ca.DeviceIdentity{}, fmt.Errorf("device certificate: %w", err)
	}
	if pub, ok := id.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return ca.DeviceIdentity{}, errors.New("the certificate is for another key than this browser's")
	}
	return id, nil
}

func (st *state) roots() (*x509.Certificate, []*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(st.CAPEM))
	if blk == nil {
		return nil, nil, errors.New("CA certificate: not PEM")
	}
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	inters, err := ca.ParseCertificatesPEM([]byte(strings.Join(st.Intermediates, "")))
	return root, inters, err
}

// open logs the device in (the WebCrypto key signs the challenge), makes
// the SDK client and publishes the device's prekeys.
func (a *app) open(ctx context.Context, st *state, store *idbStore, key crypto.Signer) error {
	sess, err := a.ident().Login(ctx, st.DeviceID, key, "")
	if err != nil {
		return err
	}
	root, inters, err := st.roots()
	if err != nil {
		return err
	}
	onNew, onKey := a.noticeHooks(st.AccountID, st.DeviceID)
	mc, err := mclient.New(mclient.Options{BaseURL: a.base, Token: sess.Token, AccountID: st.AccountID, DeviceID: st.DeviceID,
		DeviceKey: key, DeviceCertificate: []byte(st.CertPEM), CA: root, Intermediates: inters, Store: store,
		OnNewDevice: onNew, OnKeyChange: onKey})
	if err != nil {
		return err
	}
	if _, err := mc.Replenish(ctx); err != nil {
		return fmt.Errorf("publish this device's keys: %w", err)
	}
	entries, histBase, err := loadHistory(store)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.st, a.store, a.key, a.token, a.mc, a.entries, a.histBase = st, store, key, sess.Token, mc, entries, histBase
	a.mu.Unlock()
	return nil
}

func (a *app) client() (*mclient.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mc == nil {
		return nil, errors.New("not unlocked")
	}
	return a.mc, nil
}

type meResponse struct {
	AccountID string                  `json:"account"`
	Email     string                  `json:"email"`
	DeviceID  string                  `json:"device"`
	Orgs      []identity.MyMembership `json:"orgs"`
}

func (a *app) me([]js.Value) (any, error) { return a.meJSON(context.Background()) }

func (a *app) meJSON(ctx context.Context) (any, error) {
	a.mu.Lock()
	tok := a.token
	a.mu.Unlock()
	me, err := a.ident().WithToken(tok).Me(ctx)
	if err != nil {
		return nil, err
	}
	var orgs []identity.MyMembership
	for _, m := range me.Organisations {
		if identity.IsAgentRole(m.Role) {
			orgs = append(orgs, m)
		}
	}
	return jsonString(meResponse{AccountID: me.AccountID, Email: me.Email, DeviceID: me.DeviceID, Orgs: orgs})
}

func (a *app) orgName(args []js.Value) (any, error) {
	a.mu.Lock()
	tok := a.token
	a.mu.Unlock()
	o, err := a.ident().WithToken(tok).DirectoryOrg(context.Background(), args[0].String())
	if err != nil {
		return nil, err
	}
	return o.Name, nil
}

func (a *app) history([]js.Value) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return jsonString(a.entries)
}

// send(peerJSON, text) sends a text message.
func (a *app) send(args []js.Value) (any, error) {
	ctx := context.Background()
	var p peer
	if err := json.Unmarshal([]byte(args[0].String()), &p); err != nil {
		return nil, err
	}
	text := args[1].String()
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.TextBody{Text: text})
	if err != nil {
		return nil, err
	}
	if err := a.deliver(ctx, mc, p, m); err != nil {
		return nil, err
	}
	conv, _ := mc.ConversationID(p.sdk())
	e := entry{ID: m.ID, Conv: conv, Peer: p, From: "me", Kind: string(m.Kind), Text: text, At: m.SentAt.Format(time.RFC3339), State: "sent"}
	if err := a.keep(e); err != nil {
		return nil, err
	}
	return jsonString(e)
}

// listen(callback) opens the live stream; callback receives each entry
// (JSON) as it arrives, and {"error": …} when the stream stops.
func (a *app) listen(args []js.Value) (any, error) {
	cb := args[0]
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if a.live != nil {
		a.mu.Unlock()
		return "ok", nil
	}
	st, key := a.st, a.key
	live := mc.Listen(context.Background(), mclient.ListenOptions{Refresh: func(ctx context.Context) (string, error) {
		s, err := a.ident().Login(ctx, st.DeviceID, key, "")
		if err != nil {
			return "", err
		}
		return s.Token, nil
	}})
	a.live, a.notify = live, cb
	a.mu.Unlock()
	receipts := make(chan *mclient.Incoming, 4096)
	go a.receive(mc, live, cb, receipts)
	go sendReceipts(live, receipts)
	return "ok", nil
}

// sendReceipts sends delivery receipts off the receive path: what has
// gathered while one was being sent goes in the next, one receipt per
// conversation naming every message, so a backlog of a thousand messages
// costs a few sends, not a thousand round trips.
func sendReceipts(live *mclient.LiveStream, in <-chan *mclient.Incoming) {
	ctx := context.Background()
	for first := range in {
		batch := map[mclient.Peer][]string{first.Reply: {first.Message.ID}}
	more:
		for {
			select {
			case m := <-in:
				batch[m.Reply] = append(batch[m.Reply], m.Message.ID)
			default:
				break more
			}
		}
		for to, ids := range batch {
			for len(ids) > 0 {
				n := min(len(ids), maxReceiptIDs)
				m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.ReceiptBody{Status: "delivered", IDs: ids[:n]})
				if err == nil {
					_, _ = live.Send(ctx, to, m) // best effort: a lost receipt only leaves a message unticked
				}
				ids = ids[n:]
			}
		}
	}
}

// receiveBatch is how many messages the receive loop takes at once: they
// go into the history in one IndexedDB write, and are acknowledged after
// it.
const receiveBatch = 100

func (a *app) receive(mc *mclient.Client, live *mclient.LiveStream, cb js.Value, receipts chan<- *mclient.Incoming) {
	ctx := context.Background()
	fail := func(err error) {
		s, _ := jsonString(map[string]string{"error": err.Error()})
		cb.Invoke(s)
	}
	for {
		// Unreadable envelopes (bad) are acknowledged with the batch and
		// never shown as messages.
		msgs, _, err := live.ReceiveBatch(ctx, receiveBatch)
		if err != nil {
			fail(err)
			return
		}
		var kept []entry
		var wants []*mclient.Incoming
		var shown []any
		var pays []*mclient.Incoming
		for _, in := range msgs {
			if rb, ok := in.Message.Body.(*kind.ReceiptBody); ok {
				a.mark(rb.IDs, rb.Status)
				s, _ := jsonString(map[string]any{"receipt": rb.Status, "ids": rb.IDs})
				shown = append(shown, s)
				continue
			}
			if in.Message.Kind == kind.Profile {
				continue // the SDK keeps it; names come from it
			}
			if in.Message.Kind == kind.PaymentStatus {
				pays = append(pays, in) // office.go, once the batch's requests are kept
				continue
			}
			// A form submission to the office is checked and kept
			// (forms.go) before the batch is acknowledged.
			if err := a.takeForm(in); err != nil {
				fail(err)
				return
			}
			e := a.entryOf(mc, in)
			e.Unread = mc.WantsReceipt(in)
			kept = append(kept, e)
			if mc.WantsReceipt(in) {
				wants = append(wants, in)
			}
		}
		added, err := a.keepAll(kept)
		if err != nil {
			fail(err)
			return
		}
		for _, in := range pays {
			a.paymentNotice(in, cb)
		}
		// Kept: only now may the server delete them.
		if err := live.Ack(ctx); err != nil {
			fail(err)
			return
		}
		for _, in := range wants {
			select {
			case receipts <- in:
			default: // a receipt too many is dropped, never the message
			}
		}
		for _, s := range shown {
			cb.Invoke(s)
		}
		for _, e := range added {
			s, _ := jsonString(e)
			cb.Invoke(s)
		}
	}
}

func (a *app) entryOf(mc *mclient.Client, in *mclient.Incoming) entry {
	if e, ok := a.serverNotice(in, a.st.AccountID, a.st.DeviceID); ok {
		return e
	}
	e := entry{ID: in.Message.ID, Conv: in.Conversation, Peer: peerOf(in.Reply), From: in.SenderAccount,
		Kind: string(in.Message.Kind), Text: summary(in.Message), At: in.ServerTime.Format(time.RFC3339), Body: participationBody(in.Message)}
	if in.FromServer {
		e.From = "kanal"
	}
	if e.Body == nil {
		e.Body = formBody(in) // forms.go
	}
	if in.Org != nil {
		e.Org = in.Org.OrgName
	}
	if p, err := mc.Profile(in.SenderAccount); err == nil && p != nil {
		e.Name = p.DisplayName
	}
	if e.From == a.st.AccountID && !in.FromServer {
		e.From = "me"
	}
	a.groupEntry(in, &e)
	return e
}

func summary(m *kind.Message) string {
	switch b := m.Body.(type) {
	case *kind.TextBody:
		return b.Text
	case *kind.SurveyInviteBody:
		return b.Title
	case *kind.FormRequestBody:
		return b.Title
	case *kind.FormSubmissionBody:
		return b.CaseID
	case *kind.PaymentRequestBody:
		return fmt.Sprintf("%d.%02d %s %s", b.AmountCents/100, b.AmountCents%100, b.Currency, b.Purpose)
	default:
		return "[" + string(m.Kind) + "]"
	}
}

// keep adds e to the history, kept encrypted in the store.
func (a *app) keep(e entry) error {
	_, err := a.keepAll([]entry{e})
	return err
}

// keepAll adds the entries not already there to the history, kept
// encrypted in the store, in one write; it returns those it added.
func (a *app) keepAll(es []entry) ([]entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	from := len(a.entries)
	var added []entry
next:
	for _, e := range es {
		for _, x := range a.entries {
			if x.ID == e.ID && x.From == e.From {
				continue next
			}
		}
		a.entries = append(a.entries, e)
		added = append(added, e)
	}
	if len(added) == 0 {
		return nil, nil
	}
	return added, a.saveLocked(from)
}

func (a *app) mark(ids []string, status string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	first := -1
	for i := range a.entries {
		e := &a.entries[i]
		for _, id := range ids {
			if e.From == "me" && e.ID == id && e.State != "read" && e.State != status {
				e.State = status
				if first < 0 {
					first = i
				}
			}
		}
	}
	if first >= 0 {
		_ = a.saveLocked(first)
	}
}

// historyHead is the "app/history" record: entries are numbered from
// Base (the number of the first kept entry, counting every entry ever
// kept), chunk n holding entries n*historyChunk to (n+1)*historyChunk-1.
type historyHead struct {
	Base  int `json:"base"`
	Count int `json:"count"`
}

func loadHistory(s *idbStore) ([]entry, int, error) {
	b, err := s.Get(nameHistory)
	if errors.Is(err, mclient.ErrNotFound) {
		return nil, 0, nil
	} else if err != nil {
		return nil, 0, err
	}
	var h historyHead
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, 0, err
	}
	var out []entry
	for c := h.Base / historyChunk; c*historyChunk < h.Base+h.Count; c++ {
		b, err := s.Get(fmt.Sprintf("%s/%d", nameHistory, c))
		if err != nil {
			return nil, 0, err
		}
		var chunk []entry
		if err := json.Unmarshal(b, &chunk); err != nil {
			return nil, 0, err
		}
		for i, e := range chunk {
			if n := c*historyChunk + i; n >= h.Base && n < h.Base+h.Count {
				out = append(out, e)
			}
		}
	}
	return out, h.Base, nil
}

// saveLocked writes the chunks from the one holding entry from (an index
// into a.entries) to the last, and the head, in one transaction; it drops
// the oldest chunk once more than maxHistory entries are kept.
func (a *app) saveLocked(from int) error {
	base := a.histBase // a multiple of historyChunk: whole chunks are dropped
	var dropped []string
	if len(a.entries) > maxHistory+historyChunk {
		drop := (len(a.entries) - maxHistory) / historyChunk * historyChunk
		for c := base / historyChunk; c < (base+drop)/historyChunk; c++ {
			dropped = append(dropped, fmt.Sprintf("%s/%d", nameHistory, c))
		}
		a.entries = a.entries[drop:]
		base += drop
		from = max(0, from-drop)
	}
	writes := map[string][]byte{}
	for c := (base + from) / historyChunk; c*historyChunk < base+len(a.entries); c++ {
		lo, hi := max(c*historyChunk-base, 0), min((c+1)*historyChunk-base, len(a.entries))
		b, err := json.Marshal(a.entries[lo:hi])
		if err != nil {
			return err
		}
		writes[fmt.Sprintf("%s/%d", nameHistory, c)] = b
	}
	head, _ := json.Marshal(historyHead{Base: base, Count: len(a.entries)})
	writes[nameHistory] = head
	if err := a.store.PutAll(writes); err != nil {
		return err
	}
	a.histBase = base
	for _, name := range dropped {
		if err := a.store.Delete(name); err != nil {
			return err
		}
	}
	return nil
}

// deviceKey is this browser's device key: an Ed25519 WebCrypto key the
// shell made non-extractable and keeps in IndexedDB. Only its public half
// and its signatures ever reach Go.
func (a *app) deviceKey() (crypto.Signer, error) {
	v, err := await(a.shell.Call("devicePublicKey"))
	if err != nil {
		return nil, err
	}
	pub := bytesOf(v)
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("the browser's device key is not an Ed25519 key")
	}
	return &webCryptoSigner{shell: a.shell, pub: ed25519.PublicKey(pub)}, nil
}

type webCryptoSigner struct {
	shell js.Value
	pub   ed25519.PublicKey
}

func (s *webCryptoSigner) Public() crypto.PublicKey { return s.pub }

// Sign signs msg itself (Ed25519 takes the message, not a digest), which
// is why the device key is Ed25519: WebCrypto's ECDSA cannot sign a digest
// that Go has already hashed.
func (s *webCryptoSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.Hash(0) {
		return nil, errors.New("the device key signs messages, not digests")
	}
	v, err := await(s.shell.Call("sign", bytesToJS(msg)))
	if err != nil {
		return nil, err
	}
	sig := bytesOf(v)
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, errors.New("the browser's device key made a bad signature")
	}
	return sig, nil
}

func jsonString(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// promise wraps fn as a JavaScript function returning a Promise; fn runs
// on its own goroutine, so it may wait for other Promises (await).
func promise(fn func([]js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		var exec js.Func
		exec = js.FuncOf(func(_ js.Value, pa []js.Value) any {
			resolve, reject := pa[0], pa[1]
			exec.Release()
			go func() {
				v, err := fn(args)
				if err != nil {
					reject.Invoke(js.Global().Get("Error").New(err.Error()))
					return
				}
				resolve.Invoke(v)
			}()
			return nil
		})
		return js.Global().Get("Promise").New(exec)
	})
}

// await waits for a JavaScript Promise. It must not run on the goroutine
// that JavaScript called into.
func await(p js.Value) (js.Value, error) {
	done := make(chan struct{})
	var res js.Value
	var err error
	then := js.FuncOf(func(_ js.Value, a []js.Value) any {
		if len(a) > 0 {
			res = a[0]
		}
		close(done)
		return nil
	})
	catch := js.FuncOf(func(_ js.Value, a []js.Value) any {
		err = errors.New("browser: " + a[0].Call("toString").String())
		close(done)
		return nil
	})
	defer then.Release()
	defer catch.Release()
	p.Call("then", then, catch)
	<-done
	return res, err
}

func bytesOf(v js.Value) []byte {
	if v.IsUndefined() || v.IsNull() {
		return nil
	}
	b := make([]byte, v.Get("length").Int())
	js.CopyBytesToGo(b, v)
	return b
}

func bytesToJS(b []byte) js.Value {
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}
