package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/payments"
)

// paymentsDeps is what the payments domain is wired to.
type paymentsDeps struct {
	ctx   context.Context // ends the expiry sweep
	wg    *sync.WaitGroup
	mux   *http.ServeMux
	cfg   *config
	log   *slog.Logger
	db    *db.DB
	ident *identity.Service
	ca    *ca.CA
	msg   *messaging.Service
}

// mountPayments builds the payments service, registers its routes and
// starts the sweep that expires overdue requests.
func mountPayments(d paymentsDeps) (*payments.Service, error) {
	var psp *payments.PSP
	if d.cfg.PSPURL != "" {
		var err error
		psp, err = payments.NewPSP(payments.PSPOptions{Name: "psp", BaseURL: d.cfg.PSPURL, APIKey: d.cfg.PSPAPIKey, WebhookSecret: d.cfg.PSPWebhookSecret})
		if err != nil {
			return nil, &settingError{"KANAL_PSP_URL", err}
		}
	}
	s, err := payments.New(payments.Options{DB: d.db, Logger: d.log, CA: d.ca.Root(), Intermediates: d.ca.Intermediates(), Certs: d.ident, Orgs: d.ident,
		Announcer: paymentNotices{d.msg}, PSP: psp})
	if err != nil {
		return nil, err
	}
	s.Register(d.mux, payments.Auth{
		Session:  func(h http.Handler) http.Handler { return d.ident.RequireSession(ca.LevelLow, h) },
		Operator: d.ident.RequireOperator,
		Caller: func(ctx context.Context) (payments.Actor, bool) {
			if identity.IsOperator(ctx) {
				return payments.Actor{Operator: true}, true
			}
			p, ok := identity.FromContext(ctx)
			return payments.Actor{AccountID: p.AccountID, DeviceID: p.DeviceID, Level: p.Level}, ok
		},
	})
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(paymentExpiryInterval)
		defer t.Stop()
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
				if n, err := s.ExpireDue(d.ctx); err != nil && d.ctx.Err() == nil {
					d.log.Warn("payment expiry sweep", "err", err)
				} else if n > 0 {
					d.log.Info("payment expiry sweep", "expired", n)
				}
				if n, err := s.RetryRefunds(d.ctx); err != nil && d.ctx.Err() == nil {
					d.log.Warn("refund retry sweep", "err", err)
				} else if n > 0 {
					d.log.Info("refund retry sweep", "confirmed", n)
				}
				// Records past their legal retention (docs/privacy.md).
				if n, err := s.ExpireRecords(d.ctx); err != nil && d.ctx.Err() == nil {
					d.log.Warn("payment retention sweep", "err", err)
				} else if n > 0 {
					d.log.Info("payment retention sweep", "deleted requests", n)
				}
			}
		}
	}()
	return s, nil
}

// checkPSP checks the payment provider settings, naming the one to fix.
func checkPSP(c *config) error {
	switch {
	case c.PSPURL == "" && (c.PSPAPIKey != "" || c.PSPWebhookSecret != ""):
		return &settingError{"KANAL_PSP_URL", errors.New("required with KANAL_PSP_API_KEY and KANAL_PSP_WEBHOOK_SECRET")}
	case c.PSPURL == "":
		return nil
	case c.PSPAPIKey == "":
		return &settingError{"KANAL_PSP_API_KEY", errors.New("required with KANAL_PSP_URL")}
	case len(c.PSPWebhookSecret) < 32:
		return &settingError{"KANAL_PSP_WEBHOOK_SECRET", errors.New("must be at least 32 bytes")}
	}
	if _, err := payments.NewPSP(payments.PSPOptions{BaseURL: c.PSPURL, APIKey: c.PSPAPIKey, WebhookSecret: c.PSPWebhookSecret}); err != nil {
		return &settingError{"KANAL_PSP_URL", err}
	}
	return nil
}

// paymentExpiryInterval is how often a node expires overdue requests.
const paymentExpiryInterval = 15 * time.Minute

// paymentNotices posts payments' announcements into the conversation of
// the payer and the organisation as payment.status notices.
type paymentNotices struct{ m *messaging.Service }

func (n paymentNotices) Announce(ctx context.Context, a payments.Announcement) error {
	msg, err := kind.New("kanal-pay-"+a.RequestID+"-"+a.Status+"-"+fmt.Sprint(a.AmountCents), time.Now(),
		&kind.PaymentStatusBody{RequestID: a.RequestID, Status: a.Status, AmountCents: a.AmountCents})
	if err != nil {
		return err
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	return n.m.PostNotice(ctx, messaging.Notice{Accounts: []string{a.PayerAccount}, OrgID: a.OrgID,
		Conversation: messaging.OrgConversation(a.OrgID, a.PayerAccount), Message: raw})
}
