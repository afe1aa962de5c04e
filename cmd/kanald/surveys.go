package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/surveys"
)

// mountSurveys wires the surveys domain: identity's sessions and roles,
// the deployment notary (from the shared CA directory), and group
// membership from messaging for surveys addressed to a group. The
// service's group commit stops when ctx ends.
func (a *app) mountSurveys(ctx context.Context, mux *http.ServeMux, log *slog.Logger, d *db.DB, authority *ca.CA, keys *secretKeys, notary *ca.Notary, msg *messaging.Service) error {
	// The token keys are sealed under a key only the deployment secret
	// yields, as identity seals organisation keys: a database dump cannot
	// mint tokens.
	s, err := surveys.New(surveys.Options{DB: d, Notary: notary, Roots: authority.Pool(), Logger: log,
		SealKey: keys.token, LegacySealKey: keys.legacyToken,
		Directory:     orgRoles{a.ident},
		Conversations: groupMembers{msg},
		HeadLog:       a.tlog, // the board heads go into the transparency log
		// A high audience counts people: one token per proven identity.
		Persons: a.ident.EIDPerson,
		Auth: surveys.Auth{
			Require: a.ident.RequireSession,
			Caller: func(ctx context.Context) (surveys.Caller, bool) {
				p, ok := identity.FromContext(ctx)
				return surveys.Caller{AccountID: p.AccountID, DeviceID: p.DeviceID, Level: p.Level}, ok
			},
		}})
	if err != nil {
		return err
	}
	if n, err := s.ResealLegacy(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Info("survey token keys sealed again under the deployment secret", "count", n)
	}
	s.Register(mux)
	a.surveys = s
	a.wg.Add(1)
	go func() { defer a.wg.Done(); <-ctx.Done(); s.Close() }()
	return nil
}

// orgRoles answers surveys' role questions from identity.
type orgRoles struct{ s *identity.Service }

func (o orgRoles) OrgRole(ctx context.Context, org, account string) (string, error) {
	return o.s.OrgRole(ctx, org, account)
}

// groupMembers answers whether an account is in a group conversation.
type groupMembers struct{ s *messaging.Service }

func (g groupMembers) IsMember(ctx context.Context, group, account string) (bool, error) {
	if !messaging.ValidGroupID(group) {
		return false, nil
	}
	_, err := g.s.GetGroup(ctx, messaging.Caller{AccountID: account}, group)
	var p *web.Problem
	if errors.As(err, &p) && p.Type == messaging.TypeNotMember {
		return false, nil
	}
	return err == nil, err
}
