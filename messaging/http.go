package messaging

import (
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
)

// Route is one registered route and who may call it.
type Route struct {
	Pattern string
	Auth    string
}

// Who may call a route.
const (
	AuthDevice  = "session of the device whose keys these are"
	AuthSession = "any session"
	// Group routes check membership themselves.
	AuthGroupMember      = "session of a member of the group"
	AuthGroupAdmin       = "session of an admin of the group"
	AuthGroupAdminOrSelf = "session of an admin of the group, or of the member leaving"
	AuthInvitee          = "session of an account invited to the group"
	// Broadcast routes check these themselves.
	AuthOrgAgent        = "session of an agent device of the organisation"
	AuthFollowerOrAgent = "session of a follower or an agent of the organisation"
)

type route struct {
	pattern string
	auth    string
	h       func(w http.ResponseWriter, r *http.Request, c Caller) error
}

func (s *Service) routes() []route {
	rs := []route{
		{"PUT /v1/prekeys", AuthDevice, s.handlePublish},
		{"POST /v1/prekeys/one-time", AuthDevice, s.handleAddPrekeys},
		{"GET /v1/prekeys/status", AuthDevice, s.handleStatus},
		{"POST /v1/prekeys/claim", AuthSession, s.handleClaim},
	}
	if s.mailbox != nil {
		rs = append(rs,
			route{"POST /v1/messages", AuthSession, s.handleSend},
			route{"POST /v1/blobs", AuthSession, s.handleUploadBlob},
			route{"GET /v1/blobs/{id}", AuthSession, s.handleGetBlob},
			route{"POST /v1/groups", AuthSession, s.handleCreateGroup},
			route{"GET /v1/groups", AuthSession, s.handleListGroups},
			route{"GET /v1/groups/{id}", AuthGroupMember, s.handleGetGroup},
			route{"POST /v1/groups/{id}/roster", AuthGroupMember, s.handleGroupRoster},
			route{"POST /v1/groups/{id}/members", AuthGroupAdmin, s.handleAddGroupMember},
			route{"PATCH /v1/groups/{id}/members/{account}", AuthGroupAdmin, s.handleSetGroupRole},
			route{"DELETE /v1/groups/{id}/members/{account}", AuthGroupAdminOrSelf, s.handleRemoveGroupMember},
			route{"POST /v1/groups/{id}/invitation/accept", AuthInvitee, s.handleAcceptInvitation},
			route{"POST /v1/groups/{id}/invitation/decline", AuthInvitee, s.handleDeclineInvitation},
			route{"GET /v1/invitations", AuthSession, s.handleListInvitations},
		)
	}
	if s.mailbox != nil && s.roots != nil {
		rs = append(rs,
			route{"GET /v1/broadcasts", AuthSession, s.handleFollowing},
			route{"PUT /v1/broadcasts/{org}/follower", AuthSession, s.handleFollow},
			route{"DELETE /v1/broadcasts/{org}/follower", AuthSession, s.handleUnfollow},
			route{"POST /v1/broadcasts/{org}/posts", AuthOrgAgent, s.handlePost},
			route{"GET /v1/broadcasts/{org}/posts/{id}", AuthFollowerOrAgent, s.handleReadPost},
		)
	}
	return rs
}

// Routes lists the routes Register adds.
func (s *Service) Routes() []Route {
	rs := s.routes()
	out := make([]Route, len(rs))
	for i, r := range rs {
		out[i] = Route{Pattern: r.pattern, Auth: r.auth}
	}
	return out
}

// Register adds the prekey routes to mux, each behind Auth.Require. Every
// route acts for the session's own device: there is no device id in a path
// to get wrong.
func (s *Service) Register(mux *http.ServeMux) {
	for _, rt := range s.routes() {
		h := s.auth.Require(s.handler(rt.h))
		if rt.pattern == "POST /v1/messages" {
			h = s.admitSends(h)
		}
		mux.Handle(rt.pattern, h)
	}
}

func (s *Service) handler(f func(w http.ResponseWriter, r *http.Request, c Caller) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.auth.Caller(r.Context())
		if !ok || c.DeviceID == "" || c.AccountID == "" {
			web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required",
				"a device session is required"))
			return
		}
		if err := f(w, r, c); err != nil {
			web.Fail(w, r, s.log, "messaging", err, problem)
		}
	})
}

// problem maps a domain error to its problem, or nil for an internal error.
// The detail is the error's own text: it names the field and the rule,
// never a secret or SQL.
func problem(err error) *web.Problem {
	var p *web.Problem
	if errors.As(err, &p) {
		return p
	}
	var ol *db.OverloadError
	if errors.As(err, &ol) {
		return web.Errorf(http.StatusServiceUnavailable, TypeOverloaded, "Server busy",
			"the server has more messages waiting to be stored than it stores in a few seconds; nothing was sent, send again with the same client_id after retry_after seconds").
			With("retry_after", retryAfterSeconds(ol.RetryAfter))
	}
	var rl *RateLimitError
	if errors.As(err, &rl) {
		secs := int(rl.RetryAfter.Seconds() + 0.999)
		title := "Too many claims"
		switch {
		case rl.group != "":
			title = "Too many " + rl.group
		case rl.sends > 0:
			title = "Too many sends"
		}
		return web.Errorf(http.StatusTooManyRequests, web.TypeRateLimited, title, "%s", web.Detail(err)).
			With("retry_after", max(secs, 1))
	}
	for _, m := range []struct {
		err    error
		status int
		typ    web.ProblemType
		title  string
	}{
		{ErrInvalidKey, http.StatusBadRequest, TypeInvalidKey, "Invalid key"},
		{ErrBadSignature, http.StatusBadRequest, TypeBadSignature, "Bad prekey signature"},
		{ErrBadBinding, http.StatusBadRequest, TypeBadBinding, "Bad identity binding"},
		{ErrDuplicateKeyID, http.StatusConflict, TypeDuplicateKeyID, "Duplicate prekey id"},
		{ErrBatchTooLarge, http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Prekey batch too large"},
		{ErrTooManyPrekeys, http.StatusConflict, TypeTooManyPrekeys, "Too many prekeys"},
		{ErrNoIdentity, http.StatusConflict, TypeNoIdentity, "Identity not published"},
		{ErrUnknownOrg, http.StatusNotFound, TypeUnknownRecipient, "Unknown organisation"},
		{ErrUnknownDevice, http.StatusUnauthorized, web.TypeUnauthorized, "Unknown or revoked device"},
		{ErrInvalid, http.StatusBadRequest, web.TypeValidation, "Invalid request"},
	} {
		if errors.Is(err, m.err) {
			return web.Errorf(m.status, m.typ, m.title, "%s", web.Detail(err))
		}
	}
	return nil
}

func (s *Service) handlePublish(w http.ResponseWriter, r *http.Request, c Caller) error {
	var req PublishRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	st, err := s.Publish(r.Context(), c, &req)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (s *Service) handleAddPrekeys(w http.ResponseWriter, r *http.Request, c Caller) error {
	var req PrekeyBatch
	if err := web.DecodeJSON(w, r, &req, maxBatchBody); err != nil {
		return err
	}
	st, err := s.AddPrekeys(r.Context(), c, &req)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request, c Caller) error {
	st, err := s.Status(r.Context(), c.DeviceID)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (s *Service) handleClaim(w http.ResponseWriter, r *http.Request, c Caller) error {
	var req ClaimRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	resp, err := s.Claim(r.Context(), c, &req)
	var rl *RateLimitError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(max(int(rl.RetryAfter.Seconds()+0.999), 1)))
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// pemCert encodes a DER certificate as PEM, or "" for none.
func pemCert(der []byte) string {
	if len(der) == 0 {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
