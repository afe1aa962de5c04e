package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps"
	"github.com/kanal-server/kanal/miniapps/cases"
	"github.com/kanal-server/kanal/miniapps/forms"
	"github.com/kanal-server/kanal/payments"
)

// miniappsDeps is what the miniapps domain is wired to.
type miniappsDeps struct {
	ctx   context.Context // ends the expiry sweep
	wg    *sync.WaitGroup
	mux   *http.ServeMux
	cfg   *config
	log   *slog.Logger
	db    *db.DB
	ident *identity.Service
	ca    *ca.CA
	keys  *secretKeys
	msg   *messaging.Service
	pay   *payments.Service
	forms *forms.Catalogue
}

// mountMiniapps builds the mini-app registry and OpenID Provider (issuer:
// the public URL plus /oidc) and registers their routes.
func mountMiniapps(d miniappsDeps) (*miniapps.Service, error) {
	s, err := miniapps.New(miniapps.Options{DB: d.db, Logger: d.log, CA: d.ca.Root(), Intermediates: d.ca.Intermediates(), Certs: d.ident, Orgs: d.ident,
		Secret: d.keys.secret, Issuer: d.cfg.PublicURL + "/oidc", OrgConversation: messaging.OrgConversation,
		Bridge: miniapps.Bridge{RequestPayment: appPayments{d.pay}.request, Post: appPosts{d.msg}.post,
			RequestForm: appForms{d.msg, d.forms}.request}})
	if err != nil {
		return nil, &settingError{"KANAL_PUBLIC_URL", err}
	}
	if err := s.Register(d.mux, miniapps.Auth{
		Session:  func(h http.Handler) http.Handler { return d.ident.RequireSession(ca.LevelLow, h) },
		Operator: d.ident.RequireOperator,
		Caller: func(ctx context.Context) (miniapps.Actor, bool) {
			if identity.IsOperator(ctx) {
				return miniapps.Actor{Operator: true}, true
			}
			p, ok := identity.FromContext(ctx)
			return miniapps.Actor{AccountID: p.AccountID, DeviceID: p.DeviceID, Level: p.Level}, ok
		},
	}); err != nil {
		return nil, err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(10 * time.Minute)
		defer t.Stop()
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
				if _, err := s.Expire(d.ctx); err != nil && d.ctx.Err() == nil {
					d.log.Warn("mini-app expiry sweep", "err", err)
				}
			}
		}
	}()
	return s, nil
}

// appPayments creates a mini-app's payment request in payments, in its
// organisation's name; payments announces it in the chat.
type appPayments struct{ p *payments.Service }

func (a appPayments) request(ctx context.Context, ask miniapps.PaymentAsk) (string, error) {
	r, _, err := a.p.CreateAppRequest(ctx, "app:"+ask.AppID, ask.OrgID, ask.Key, payments.CreateParams{PayerAccount: ask.AccountID,
		AmountCents: ask.AmountCents, Creditor: ask.Creditor, IBAN: ask.IBAN, BIC: ask.BIC, Purpose: ask.Purpose, DueDate: ask.DueDate})
	if err != nil {
		if errors.Is(err, payments.ErrInvalid) || errors.Is(err, payments.ErrIdempotency) {
			return "", fmt.Errorf("%w: %v", miniapps.ErrInvalid, err)
		}
		return "", err
	}
	return r.RequestID, nil
}

// appPosts posts a mini-app's message as an app.post notice: signed by
// the deployment notary, to the citizen's devices and the organisation's
// agents, in the conversation the app was opened from.
type appPosts struct{ m *messaging.Service }

func (a appPosts) post(ctx context.Context, p miniapps.Post) error {
	msg, err := kind.New("kanal-app-"+p.AppID+"-"+fmt.Sprint(time.Now().UnixNano()), time.Now(),
		&kind.AppPostBody{AppID: p.AppID, AppName: p.AppName, OrgID: p.OrgID, Text: p.Text})
	if err != nil {
		return fmt.Errorf("%w: %v", miniapps.ErrInvalid, err)
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	return a.m.PostNotice(ctx, messaging.Notice{Accounts: []string{p.AccountID}, OrgID: p.OrgID, Conversation: p.Conversation, Message: raw})
}

// appForms sends a mini-app's form request as a form.request notice, like
// appPosts: the newest published, not withdrawn version of a template of
// the app's own organisation. The notice only points at the template; the
// citizen's client fetches it and checks its signature, publisher and hash
// itself before the citizen fills it in (docs/miniapps.md).
type appForms struct {
	m   *messaging.Service
	cat *forms.Catalogue
}

func (a appForms) request(ctx context.Context, f miniapps.FormAsk) error {
	vs, err := a.cat.List(ctx, forms.ListOptions{ID: f.TemplateID, OrgID: f.OrgID, Limit: 1})
	if err != nil && !errors.Is(err, forms.ErrInvalid) {
		return err
	}
	if len(vs) == 0 {
		return web.Errorf(http.StatusUnprocessableEntity, cases.TypeUnknownForm, "Unknown form",
			"%s has no published form %q", f.OrgID, f.TemplateID)
	}
	v := vs[0]
	msg, err := kind.New("kanal-app-"+f.AppID+"-"+fmt.Sprint(time.Now().UnixNano()), time.Now(), &kind.FormRequestBody{
		RequestID: "fr_" + strings.ToLower(rand.Text())[:20], TemplateID: v.ID, Version: v.Version, TemplateHash: v.Hash, Title: f.Title})
	if err != nil {
		return fmt.Errorf("%w: %v", miniapps.ErrInvalid, err)
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	return a.m.PostNotice(ctx, messaging.Notice{Accounts: []string{f.AccountID}, OrgID: f.OrgID, Conversation: f.Conversation, Message: raw})
}
