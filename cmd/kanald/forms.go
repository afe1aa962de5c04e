package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/miniapps/forms"
)

// mountForms builds the catalogue of form templates and registers its
// routes. The templates' signatures chain to the deployment's root,
// through one of its intermediates when the root is kept offline; their
// signers' certificates and memberships are checked against identity.
func mountForms(mux *http.ServeMux, log *slog.Logger, d *db.DB, ident *identity.Service, authority *ca.CA) (*forms.Catalogue, error) {
	c, err := forms.NewCatalogue(forms.Options{DB: d, Logger: log, CA: authority.Root(), Intermediates: authority.Intermediates(),
		Certs: ident, Orgs: ident})
	if err != nil {
		return nil, err
	}
	c.Register(mux, forms.Auth{
		Session: func(h http.Handler) http.Handler { return ident.RequireSession(ca.LevelLow, h) },
		Caller: func(ctx context.Context) (forms.Actor, bool) {
			p, ok := identity.FromContext(ctx)
			return forms.Actor{AccountID: p.AccountID, DeviceID: p.DeviceID}, ok
		},
	})
	return c, nil
}
