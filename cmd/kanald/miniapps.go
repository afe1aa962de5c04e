package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/miniapps"
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
}

// mountMiniapps builds the mini-app registry and OpenID Provider (issuer:
// the public URL plus /oidc) and registers their routes.
func mountMiniapps(d miniappsDeps) error {
	s, err := miniapps.New(miniapps.Options{DB: d.db, Logger: d.log, CA: d.ca.Certificate(), Certs: d.ident, Orgs: d.ident,
		Secret: d.keys.secret, Issuer: d.cfg.PublicURL + "/oidc", OrgConversation: messaging.OrgConversation})
	if err != nil {
		return &settingError{"KANAL_PUBLIC_URL", err}
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
		return err
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
	return nil
}
