package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/cases"
	"github.com/kanal-server/kanal/miniapps/forms"
	"github.com/kanal-server/kanal/payments"
)

// mountCases wires the case inbox: identity's roles, the form catalogue,
// case.status notices into the citizen's conversation with the office,
// and a template's fee to payments.
func (a *app) mountCases(mux *http.ServeMux, log *slog.Logger, d *db.DB, msg *messaging.Service, pay *payments.Service, cat *forms.Catalogue) error {
	s, err := cases.New(cases.Options{DB: d, Logger: log, Orgs: caseOrgs{a.ident}, Templates: caseTemplates{cat},
		Announcer: caseNotices{msg}, Fees: caseFees{pay}})
	if err != nil {
		return err
	}
	s.Register(mux, cases.Auth{
		Session: func(h http.Handler) http.Handler { return a.ident.RequireSession(ca.LevelLow, h) },
		Caller: func(ctx context.Context) (cases.Actor, bool) {
			p, ok := identity.FromContext(ctx)
			return cases.Actor{AccountID: p.AccountID, DeviceID: p.DeviceID, Level: p.Level.String()}, ok
		},
	})
	a.cases = s
	return nil
}

// caseOrgs answers the case inbox's questions from identity.
type caseOrgs struct{ s *identity.Service }

func (o caseOrgs) OrgRole(ctx context.Context, org, account string) (string, error) {
	return o.s.OrgRole(ctx, org, account)
}

func (o caseOrgs) OrgVerified(ctx context.Context, org string) (bool, error) {
	_, _, err := o.s.OrgAgents(ctx, org)
	if errors.Is(err, identity.ErrUnknownOrg) {
		return false, nil
	}
	return err == nil, err
}

// caseTemplates looks a submission's template up in the form catalogue:
// a version the office itself published (an adopting office publishes its
// own version), verified against the deployment CA.
type caseTemplates struct{ cat *forms.Catalogue }

func (c caseTemplates) Template(ctx context.Context, org, id, version string) (cases.Template, error) {
	e, err := c.cat.Get(ctx, id, version, true)
	if errors.Is(err, forms.ErrNotFound) {
		return cases.Template{}, fmt.Errorf("%w: %s %s is not in the catalogue", cases.ErrUnknownTemplate, id, version)
	} else if err != nil {
		return cases.Template{}, err
	}
	if e.OrgID != org {
		return cases.Template{}, fmt.Errorf("%w: %s %s is not a form of organisation %s", cases.ErrUnknownTemplate, id, version, org)
	}
	v, err := c.cat.Verify(e.Signed)
	if err != nil {
		return cases.Template{}, fmt.Errorf("cases: stored template %s %s: %w", id, version, err)
	}
	t := v.Template
	out := cases.Template{ID: t.ID, Version: t.Version, Hash: t.Hash(), Title: t.Title.DE, ProcessingDays: t.ProcessingDays,
		Withdrawn: e.WithdrawnAt != nil, Level: t.Level}
	if t.Fee != nil {
		out.FeeCents, out.FeePurpose = t.Fee.AmountCents, t.Fee.Purpose
	}
	return out, nil
}

// caseNotices posts a case's change into the conversation of the citizen
// and the office, to the citizen's devices and the office's agents, as a
// case.status notice.
type caseNotices struct{ m *messaging.Service }

func (n caseNotices) Announce(ctx context.Context, c cases.Case) error {
	msg, err := kind.New(fmt.Sprintf("kanal-case-%s-%d", c.ID, c.Seq), c.UpdatedAt, &kind.CaseStatusBody{CaseID: c.ID,
		SubmissionID: c.SubmissionID, TemplateID: c.TemplateID, Status: c.Status, DueDate: c.DueDate, Assignee: c.Assignee, Seq: c.Seq})
	if err != nil {
		return err
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	return n.m.PostNotice(ctx, messaging.Notice{Accounts: []string{c.Citizen}, OrgID: c.OrgID,
		Conversation: messaging.OrgConversation(c.OrgID, c.Citizen), Message: raw})
}

// caseFees charges a template's fee through payments: a payment request
// in the office's name to its fee account, payable by the citizen within
// the case's processing time (at least a week), made once per case.
type caseFees struct{ p *payments.Service }

func (f caseFees) Check(a cases.FeeAccount) (cases.FeeAccount, error) {
	iban, err := payments.CheckAccount(a.Creditor, a.IBAN, a.BIC)
	if err != nil {
		return cases.FeeAccount{}, err
	}
	a.IBAN = iban
	return a, nil
}

func (f caseFees) Charge(ctx context.Context, c cases.Case, t cases.Template, to cases.FeeAccount) (string, error) {
	due := c.CreatedAt.AddDate(0, 0, max(t.ProcessingDays, 7))
	r, _, err := f.p.CreateFee(ctx, "forms", c.OrgID, "case-fee-"+c.ID, payments.CreateParams{PayerAccount: c.Citizen,
		AmountCents: t.FeeCents, Creditor: to.Creditor, IBAN: to.IBAN, BIC: to.BIC, Purpose: t.FeePurpose,
		DueDate: due.Format(time.DateOnly)})
	if err != nil {
		return "", err
	}
	return r.RequestID, nil
}
