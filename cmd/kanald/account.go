package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// An account's own data: the export of GDPR Art. 15 and the erasure of
// Art. 17 (docs/privacy.md). Each domain gives and erases its own part;
// this file, which knows every domain, asks each in turn.

// maxAccountRequest bounds the body of an export or erasure request.
const maxAccountRequest = 4 << 10

// Problem types of the account routes.
var (
	typeConfirmMismatch = web.NewType("confirmation-mismatch")
)

// exportPart is one file of the export: which domain's data, and what it
// holds, in the words of the README the client writes.
type exportPart struct {
	name, about string
	data        func(ctx context.Context, x *exportContext) (any, error)
}

// exportContext is what the parts share: the account and its devices.
type exportContext struct {
	account string
	devices []string
	ident   *identity.IdentityExport
}

func (a *app) exportParts() []exportPart {
	return []exportPart{
		{"account.json", "The account: its id, e-mail address, when it was created, and whether it has a password (the password's argon2id hash is not exported).",
			func(_ context.Context, x *exportContext) (any, error) { return x.ident.Account, nil }},
		{"devices.json", "Every device of the account, revoked ones included: name, level of assurance, certificate (PEM) and every certificate serial ever issued, membership certificates, and the sessions and refresh tokens of each (kind, level, expiry, whether used or revoked; never the tokens, which are credentials).",
			func(_ context.Context, x *exportContext) (any, error) { return x.ident.Devices, nil }},
		{"memberships.json", "The organisations the account is a member of: organisation id and name, role, since when.",
			func(_ context.Context, x *exportContext) (any, error) { return x.ident.Memberships, nil }},
		{"audit.json", "Entries of the identity audit log that name the account, as the one who acted or as the one acted on: time, actor, action, organisation, detail.",
			func(_ context.Context, x *exportContext) (any, error) { return x.ident.Audit, nil }},
		{"transparency-log.json", "Entries of the public transparency log about the account's devices and memberships: index, kind, device, organisation, time. The entries themselves are public at GET /v1/log/entries; they name the account by a commitment under a salt the server deletes when the account is erased.",
			func(_ context.Context, x *exportContext) (any, error) { return x.ident.Log, nil }},
		{"messaging.json", "Messaging: the groups the account is in (role, since when, member count), pending invitations and declines to or by it, for each device its published public keys, how many one-time prekeys are left, the envelopes waiting in its mailbox (metadata only: the content is end-to-end encrypted) and its recent sends (conversation ids), and the attachment blobs it uploaded (size, hash, expiry; the content is encrypted with a key the server never had), and the organisations whose broadcasts it follows (since when).",
			func(ctx context.Context, x *exportContext) (any, error) {
				return a.msg.ExportAccount(ctx, x.account, x.devices)
			}},
		{"push.json", "Web push subscriptions of the account's devices: endpoint, the subscription's public keys, when it was registered and last used, and a pending wake-up.",
			func(ctx context.Context, x *exportContext) (any, error) { return a.push.ExportDevices(ctx, x.devices) }},
		{"payments.json", "Payments: every payment request the account pays or created, their state transitions, ledger entries and refunds, contracts and offers it is party to, the payments audit log entries and stored idempotent answers that name it, bank statement entries matched to its requests, provider events of its requests. Each row as stored: times in Unix seconds, amounts in euro cents.",
			func(ctx context.Context, x *exportContext) (any, error) {
				return a.payments.ExportAccount(ctx, x.account)
			}},
		{"surveys.json", "Surveys: the surveys for which the account received an anonymous eligibility token (that it did; never which token or ballot, which the server cannot know), its ballots in named surveys (their place on the public board), and the surveys it created.",
			func(ctx context.Context, x *exportContext) (any, error) {
				return a.surveys.ExportAccount(ctx, x.account)
			}},
		{"vault.json", "The vault: every document and each version's metadata as stored (size, SHA-256 of the ciphertext, times, the creating device, the title and tags encrypted with the document's key), which devices its key is wrapped to, the shares made and received, and the quota used. The documents themselves are under vault/, decrypted on this device.",
			func(ctx context.Context, x *exportContext) (any, error) { return a.vault.ExportAccount(ctx, x.account) }},
		{"miniapps.json", "Mini-apps: your consent decisions per app and scope, the pairwise subjects under which apps know you (one per app), the handles an app's bridge posts to you through, the tokens issued to apps for you (never the tokens themselves), the manifests you signed for your organisation, and the mini-app audit entries that name you.",
			func(ctx context.Context, x *exportContext) (any, error) {
				return a.miniapps.ExportAccount(ctx, x.account)
			}},
		{"cases.json", "Cases: the cases your form submissions opened with an office, or that were assigned to you as an agent (template, status, due date, assignee, payment request of the fee), and every change of them (status, assignee, who, when; times in Unix milliseconds). The answers and notes were never on the server.",
			func(ctx context.Context, x *exportContext) (any, error) { return a.cases.ExportAccount(ctx, x.account) }},
		{"forms.json", "Form templates you published or withdrew in your organisation's name.",
			func(ctx context.Context, x *exportContext) (any, error) {
				return a.forms.TemplatesPublished(ctx, x.account)
			}},
	}
}

// mountAccount registers POST /v1/account/export and POST
// /v1/account/erase. Both take only a session of the account itself
// (never the operator's token: the operator's way into user data does
// not exist) and a fresh proof of the session's device key; erasure
// needs a substantial session as well.
func (a *app) mountAccount(mux *http.ServeMux, log *slog.Logger) {
	handle := func(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				web.Fail(w, r, log, "account", err, func(err error) *web.Problem {
					var p *web.Problem
					if errors.As(err, &p) {
						return p
					}
					return nil
				})
			}
		})
	}
	mux.Handle("POST /v1/account/export", a.ident.RequireSession(ca.LevelLow, handle(a.handleExport)))
	mux.Handle("POST /v1/account/erase", a.ident.RequireSession(ca.LevelSubstantial, handle(func(w http.ResponseWriter, r *http.Request) error {
		return a.handleErase(w, r, log)
	})))
}

func (a *app) handleExport(w http.ResponseWriter, r *http.Request) error {
	var req identity.ExportRequest
	if err := web.DecodeJSON(w, r, &req, maxAccountRequest); err != nil {
		return err
	}
	ctx := r.Context()
	p, err := a.ident.CheckAccountProof(ctx, identity.ChallengeExport, req.ChallengeID, req.Signature)
	if err != nil {
		return err
	}
	out, err := a.exportAccount(ctx, p.AccountID)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// exportAccount collects every domain's part of the account's data.
func (a *app) exportAccount(ctx context.Context, account string) (*identity.AccountExport, error) {
	x := &exportContext{account: account}
	var err error
	if x.ident, err = a.ident.ExportAccount(ctx, account); err != nil {
		return nil, err
	}
	for _, d := range x.ident.Devices {
		x.devices = append(x.devices, d.DeviceID)
	}
	out := &identity.AccountExport{AccountID: account, GeneratedAt: time.Now().UTC(), Files: []identity.ExportFile{}}
	for _, part := range a.exportParts() {
		v, err := part.data(ctx, x)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", part.name, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", part.name, err)
		}
		out.Files = append(out.Files, identity.ExportFile{Name: part.name, About: part.about, Data: b})
	}
	return out, nil
}

// keptAfterErasure says what an erasure keeps, in the answer; the reasons
// and periods are in docs/privacy.md.
var keptAfterErasure = []string{
	"payment requests, contracts, offers, ledger, refunds and the payments audit log, naming the pseudonym (§ 147 AO, § 257 HGB: ten years)",
	"the identity audit log, naming the pseudonym",
	"revoked device and membership certificates, without name or account, until they expire (revocation lists)",
	"the transparency log's entries about the account's devices (append-only and public; they name the account by a commitment whose salt is now deleted, and hold device ids and key fingerprints, no e-mail and no name; entries logged before commitments existed keep the account id)",
	"ballots of named surveys on their public boards",
	"group and organisation notices telling the remaining members and agents that the account left, until their devices fetch them",
}

func (a *app) handleErase(w http.ResponseWriter, r *http.Request, log *slog.Logger) error {
	var req identity.EraseRequest
	if err := web.DecodeJSON(w, r, &req, maxAccountRequest); err != nil {
		return err
	}
	ctx := r.Context()
	p, ok := identity.FromContext(ctx)
	if !ok {
		return errors.New("account: no session")
	}
	// The confirmation is checked before the challenge is spent: a typo
	// costs nothing.
	if req.Confirm != p.AccountID {
		return web.Errorf(http.StatusBadRequest, typeConfirmMismatch, "Confirmation does not match",
			"confirm must repeat the id of the account to erase, %s", p.AccountID)
	}
	if _, err := a.ident.CheckAccountProof(ctx, identity.ChallengeErase, req.ChallengeID, req.Signature); err != nil {
		return err
	}
	out, err := a.eraseAccount(ctx, log, p.AccountID)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// eraseAccount erases account: it leaves its groups (the remaining
// members are told), then one transaction pseudonymises what the law
// makes the server keep and removes the rest, in every domain, identity
// last; after the commit, its streams close everywhere and the agents of
// the organisations it left are told. Every step before the commit is
// idempotent, so an erasure that failed half way is done again whole.
func (a *app) eraseAccount(ctx context.Context, log *slog.Logger, account string) (*identity.AccountErasure, error) {
	if _, err := a.msg.LeaveAllGroups(ctx, account); err != nil {
		return nil, err
	}
	// The vault destroys the wrapped keys first (crypto-shredding), then
	// the documents and shares (recipients are told), in a transaction of
	// its own, then the blobs nothing refers to.
	if _, err := a.vault.EraseAccount(ctx, account); err != nil {
		return nil, fmt.Errorf("erase: vault: %w", err)
	}
	pseudonym, err := a.ident.NewPseudonym()
	if err != nil {
		return nil, err
	}
	var e *identity.Erasure
	err = a.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := a.payments.PseudonymiseAccountTx(ctx, tx, account, pseudonym); err != nil {
			return err
		}
		if err := a.surveys.PseudonymiseAccountTx(ctx, tx, account, pseudonym); err != nil {
			return err
		}
		if err := a.msg.EraseAccountTx(ctx, tx, account, pseudonym); err != nil {
			return err
		}
		if err := a.miniapps.EraseAccountTx(ctx, tx, account, pseudonym); err != nil {
			return err
		}
		if err := a.forms.PseudonymiseAccountTx(ctx, tx, account, pseudonym); err != nil {
			return err
		}
		if err := a.cases.PseudonymiseAccountTx(ctx, tx, account, pseudonym); err != nil {
			return err
		}
		var err error
		e, err = a.ident.EraseAccountTx(ctx, tx, account, pseudonym)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	a.ident.Erased(e)
	for _, org := range e.Orgs {
		// The erasure stands whether or not the notice reaches the
		// agents; the organisation's audit log and membership CRL have it
		// anyway.
		if err := a.announceMemberErased(ctx, org, account); err != nil {
			log.Warn("announce erased member", "org", org, "err", err)
		}
	}
	return &identity.AccountErasure{AccountID: account, Pseudonym: pseudonym, ErasedAt: time.Now().UTC(), Kept: keptAfterErasure}, nil
}

// announceMemberErased posts an org.change notice (op erased) to the
// remaining agents of org, in the organisation's staff conversation: the
// member's account was erased, its membership has ended.
func (a *app) announceMemberErased(ctx context.Context, org, account string) error {
	now := time.Now()
	msg, err := kind.New(fmt.Sprintf("kanal-org-%d", now.UnixNano()), now, &kind.OrgChangeBody{OrgID: org, Op: "erased", AccountID: account})
	if err != nil {
		return err
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	return a.msg.PostNotice(ctx, messaging.Notice{OrgID: org, Conversation: messaging.OrgStaffConversation(org), Message: raw})
}
