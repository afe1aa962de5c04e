package identity

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"strings"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
)

// Principal is who is calling: an account acting through one of its
// devices, at the level of assurance of the session.
type Principal struct {
	AccountID string
	DeviceID  string
	Level     ca.Level
}

// caller is what authentication established. Exactly one of the kinds is
// set: an operator, a setup token (account only, no device) or a session.
type caller struct {
	operator    bool
	operatorID  string // op1, op2, …: which operator token, for the audit log
	setup       bool
	p           Principal
	sessionHash string
	family      string // of a session
	expires     int64  // of a session, Unix seconds
}

type ctxKey struct{}

// FromContext returns the session principal of a request that passed
// RequireSession (or one of the identity routes that take a session).
func FromContext(ctx context.Context) (Principal, bool) {
	c, ok := ctx.Value(ctxKey{}).(*caller)
	if !ok || c.operator || c.setup {
		return Principal{}, false
	}
	return c.p, true
}

// IsOperator reports whether the request was authenticated as the operator.
func IsOperator(ctx context.Context) bool {
	c, ok := ctx.Value(ctxKey{}).(*caller)
	return ok && c.operator
}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(ctxKey{}).(*caller)
	return c
}

type accept uint8

const (
	acceptSession accept = 1 << iota
	acceptSetup
	acceptOperator
)

// RequireSession protects h: the request must carry a live session token
// of a device that is not revoked, with at least level min. Other domains
// wrap their routes with it and read the caller with FromContext.
func (s *Service) RequireSession(min ca.Level, h http.Handler) http.Handler {
	return s.authenticate(h, acceptSession, min)
}

// RequireOperator protects h: the request must carry the operator token.
func (s *Service) RequireOperator(h http.Handler) http.Handler {
	return s.authenticate(h, acceptOperator, ca.LevelLow)
}

var (
	errNoToken = web.Errorf(http.StatusUnauthorized, TypeInvalidToken, "Authentication required",
		"send Authorization: Bearer <token>")
	errBadToken = web.Errorf(http.StatusUnauthorized, TypeInvalidToken, "Invalid token",
		"the token is unknown, revoked or not accepted here")
	errSessionExpired = web.Errorf(http.StatusUnauthorized, TypeSessionExpired, "Session expired",
		"refresh the session or log in again")
	errDeviceRevoked = web.Errorf(http.StatusUnauthorized, TypeDeviceRevoked, "Device revoked",
		"this device has been removed from its account")
	errOperatorExpired = web.Errorf(http.StatusUnauthorized, TypeInvalidToken, "Operator token expired",
		"issue a new one on the server with: kanald operator reset")
	// An expired certificate cannot be renewed: renewing needs the
	// certificate to vouch for the key that proves the renewal. The way
	// back is the way any new device comes in.
	errDeviceExpired = web.Errorf(http.StatusUnauthorized, TypeDeviceExpired, "Device certificate expired",
		"this device's certificate has expired and can no longer be renewed; enrol this machine again as a new device, approved by another of your devices, and revoke the old one")
)

func (s *Service) authenticate(h http.Handler, kinds accept, min ca.Level) http.Handler {
	return s.handler(func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.identify(r, kinds)
		if err != nil {
			return err
		}
		if !c.operator && !c.setup && c.p.Level < min {
			return web.Errorf(http.StatusForbidden, web.TypeInsufficientLevel, "Insufficient level of assurance",
				"this needs a %s session; log in with your password", min)
		}
		if c.operator {
			// Every request made with an operator token is in the audit
			// log, with the token's id, before it runs: an operator action
			// that cannot be recorded does not happen.
			if err := s.auditOperatorRequest(r, c); err != nil {
				return err
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
		return nil
	})
}

func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if v == "" {
		if tok, ok := websocketBearer(r); ok {
			return tok, true
		}
	}
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != "" && len(tok) <= 128
}

// WebsocketBearerPrefix marks the subprotocol that carries a bearer token
// on a websocket upgrade. A browser's WebSocket cannot send an
// Authorization header, so the web app offers two subprotocols, "kanal"
// and "kanal.bearer.<token>"; the server selects "kanal" and never echoes
// the token. Only a script that holds the token can offer it, so this is
// no ambient credential a foreign page could use (unlike a cookie).
const WebsocketBearerPrefix = "kanal.bearer."

// websocketBearer reads the token a browser offers as a websocket
// subprotocol, on an upgrade request only.
func websocketBearer(r *http.Request) (string, bool) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return "", false
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if tok, ok := strings.CutPrefix(strings.TrimSpace(p), WebsocketBearerPrefix); ok {
				return tok, tok != "" && len(tok) <= 128
			}
		}
	}
	return "", false
}

func (s *Service) identify(r *http.Request, kinds accept) (*caller, error) {
	tok, ok := bearer(r)
	if !ok {
		return nil, errNoToken
	}
	ctx := r.Context()
	now := s.now().Unix()
	h := hashToken(tok)
	switch {
	case strings.HasPrefix(tok, prefixSession) && kinds&acceptSession != 0:
		row, found, err := s.sessions.read(ctx, h)
		switch {
		case err != nil:
			return nil, err
		case !found, !equalSecret(row.hash, h):
			return nil, errBadToken
		case row.devRevoked:
			return nil, errDeviceRevoked
		case row.revoked:
			return nil, errBadToken
		case row.devExpires <= now:
			// A session is no stronger than the certificate it was
			// opened with: it ends when the certificate does.
			return nil, errDeviceExpired
		case row.expires <= now:
			return nil, errSessionExpired
		}
		return &caller{p: Principal{AccountID: row.account, DeviceID: row.device, Level: ca.Level(row.level)},
			sessionHash: row.hash, family: row.family, expires: row.expires}, nil
	case strings.HasPrefix(tok, prefixSetup) && kinds&acceptSetup != 0:
		var c caller
		var stored string
		var expires int64
		err := s.db.QueryRow(ctx, `SELECT token_hash, account_id, expires_at FROM identity_setup_tokens WHERE token_hash = $1`, h).
			Scan(&stored, &c.p.AccountID, &expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, errBadToken
		case err != nil:
			return nil, err
		case !equalSecret(stored, h), expires <= now:
			return nil, errBadToken
		}
		c.setup = true
		return &c, nil
	case strings.HasPrefix(tok, prefixOperator) && kinds&acceptOperator != 0:
		var stored string
		var gen, expires int64
		var revoked sql.NullInt64
		err := s.db.QueryRow(ctx, `SELECT generation, token_hash, expires_at, revoked_at FROM identity_operator_tokens WHERE token_hash = $1`, h).
			Scan(&gen, &stored, &expires, &revoked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, errBadToken
		case err != nil:
			return nil, err
		case !equalSecret(stored, h), revoked.Valid:
			return nil, errBadToken
		case expires <= now:
			return nil, errOperatorExpired
		}
		return &caller{operator: true, operatorID: operatorID(gen)}, nil
	}
	return nil, errBadToken
}

// OrgRole returns the role of an account in an organisation, or "" if it
// is not a member. Other domains use it to check that an agent speaks for
// the organisation.
func (s *Service) OrgRole(ctx context.Context, orgID, accountID string) (string, error) {
	var role string
	err := s.db.QueryRow(ctx, `SELECT role FROM identity_members WHERE org_id = $1 AND account_id = $2`, orgID, accountID).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return role, err
}

// auditOperatorRequest appends the request line of an operator request
// (method and path with query, never headers or body) to the audit log.
func (s *Service) auditOperatorRequest(r *http.Request, c *caller) error {
	line := r.Method + " " + r.URL.RequestURI()
	if len(line) > maxAuditDetail {
		line = line[:maxAuditDetail]
	}
	return s.db.Tx(r.Context(), func(tx *sql.Tx) error {
		return audit(r.Context(), tx, s.now().Unix(), actorOf(c), "operator.request", "", "", line)
	})
}
