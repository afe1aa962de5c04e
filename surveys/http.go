package surveys

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
)

// Route is one registered route and who may call it.
type Route struct {
	Pattern string
	Auth    string
}

// Who may call a route.
const (
	AuthOrganiser = "session (substantial) of an organiser, admin or owner of the survey's organisation"
	AuthEligible  = "session of an account in the survey's audience"
	AuthSession   = "any session"
	AuthNone      = "no session: anyone"
	AuthNoSession = "no session allowed: a request with one is refused"
	AuthOptional  = "anyone for public results; a member's session for organisation results"
)

type route struct {
	pattern string
	auth    string
	h       http.Handler
}

func (s *Service) routes() []route {
	organiser := func(f handlerFunc) http.Handler { return s.auth.Require(ca.LevelSubstantial, s.withCaller(f)) }
	session := func(f handlerFunc) http.Handler { return s.auth.Require(ca.LevelLow, s.withCaller(f)) }
	return []route{
		{"POST /v1/surveys", AuthOrganiser, organiser(s.handleCreate)},
		{"PUT /v1/surveys/{id}/definition", AuthOrganiser, organiser(s.handleDefine)},
		{"GET /v1/surveys", AuthSession, session(s.handleList)},
		{"GET /v1/surveys/{id}", AuthNone, s.public(s.handleGet)},
		{"POST /v1/surveys/{id}/token", AuthEligible, session(s.handleToken)},
		{"POST /v1/surveys/{id}/ballots", AuthNoSession, s.public(s.handleBallot)},
		{"POST /v1/surveys/{id}/named-ballots", AuthEligible, session(s.handleNamedBallot)},
		{"GET /v1/surveys/{id}/board", AuthNone, s.public(s.handleBoard)},
		{"POST /v1/surveys/{id}/close", AuthOrganiser, organiser(s.handleClose)},
		{"POST /v1/surveys/{id}/tally", AuthOrganiser, organiser(s.handleTally)},
		{"GET /v1/surveys/{id}/result", AuthOptional, s.optional(s.handleResult)},
		{"GET /v1/surveys/{id}/result.csv", AuthOptional, s.optional(s.handleResultCSV)},
		{"GET /v1/surveys/{id}/result.svg", AuthOptional, s.optional(s.handleResultSVG)},
	}
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

// Register adds the surveys routes to mux.
func (s *Service) Register(mux *http.ServeMux) {
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, rt.h)
	}
}

// handlerFunc gets the caller, nil when the route runs without a session.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *Caller) error

func (s *Service) withCaller(f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.auth.Caller(r.Context())
		if !ok || c.AccountID == "" {
			web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required", "a session is required"))
			return
		}
		s.serve(w, r, f, &c)
	})
}

func (s *Service) public(f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, f, nil) })
}

// optional authenticates a request that carries a session and serves one
// without as anyone.
func (s *Service) optional(f handlerFunc) http.Handler {
	withSession := s.auth.Require(ca.LevelLow, s.withCaller(f))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			withSession.ServeHTTP(w, r)
			return
		}
		s.serve(w, r, f, nil)
	})
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request, f handlerFunc, c *Caller) {
	if err := f(w, r, c); err != nil {
		p := problem(err)
		if p == nil {
			s.log.ErrorContext(r.Context(), "surveys", "request_id", web.RequestID(r.Context()), "route", r.Pattern, "err", err)
			web.WriteError(w, r, err)
			return
		}
		web.WriteProblem(w, r, p)
	}
}

// problem maps a domain error to its problem, or nil for an internal one.
func problem(err error) *web.Problem {
	var p *web.Problem
	if errors.As(err, &p) {
		return p
	}
	for _, m := range []struct {
		err    error
		status int
		typ    web.ProblemType
		title  string
	}{
		{ErrNotFound, http.StatusNotFound, web.TypeNotFound, "No such survey"},
		{ErrInvalid, http.StatusBadRequest, web.TypeValidation, "Invalid request"},
		{ErrBadSignature, http.StatusBadRequest, TypeBadDefinitionSignature, "Bad definition signature"},
		{ErrForbidden, http.StatusForbidden, web.TypeForbidden, "Not allowed"},
		{ErrNotEligible, http.StatusForbidden, TypeNotEligible, "Not eligible"},
		{ErrAlreadyIssued, http.StatusConflict, TypeTokenAlreadyIssued, "Token already issued"},
		{ErrOtherSurvey, http.StatusBadRequest, TypeOtherSurveyToken, "Token of another survey"},
		{ErrBadToken, http.StatusBadRequest, TypeBadToken, "Bad token"},
		{ErrAlreadyVoted, http.StatusConflict, TypeAlreadyVoted, "Already counted"},
		{ErrNotOpen, http.StatusConflict, TypeSurveyNotOpen, "Survey not open"},
		{ErrOpened, http.StatusConflict, TypeSurveyOpened, "Survey already opened"},
		{ErrNotClosed, http.StatusConflict, TypeSurveyNotClosed, "Survey not closed"},
		{ErrTallied, http.StatusConflict, TypeAlreadyTallied, "Already tallied"},
		{ErrNotTallied, http.StatusConflict, TypeNotTallied, "Not tallied yet"},
		{ErrBadTallyKey, http.StatusBadRequest, TypeBadTallyKey, "Wrong tally key"},
		{ErrWrongMode, http.StatusConflict, TypeWrongMode, "Wrong mode"},
		{ErrSessionPresent, http.StatusBadRequest, TypeSessionNotAllowed, "Session not allowed"},
		{ErrNotConfigured, http.StatusNotImplemented, TypeNotConfigured, "Not configured"},
	} {
		if errors.Is(err, m.err) {
			return web.Errorf(m.status, m.typ, m.title, "%s", web.Detail(err))
		}
	}
	return nil
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req CreateRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	d, err := s.Create(r.Context(), *c, req.OrgID, req.Mode)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, d)
	return nil
}

func (s *Service) handleDefine(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req Signed
	if err := web.DecodeJSON(w, r, &req, MaxDefinition); err != nil {
		return err
	}
	if err := s.Define(r.Context(), *c, r.PathValue("id"), &req); err != nil {
		return err
	}
	sv, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, sv)
	return nil
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request, c *Caller) error {
	l, err := s.ListOpen(r.Context(), *c)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, SurveyList{Surveys: l})
	return nil
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sv, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, sv)
	return nil
}

func (s *Service) handleToken(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req TokenRequestBody
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if err := web.CheckIdempotencyKey(r.Header, TokenIdempotencyKey(req.Blinded), "the hex SHA-256 of blinded"); err != nil {
		return err
	}
	sig, err := s.IssueToken(r.Context(), *c, r.PathValue("id"), req.Blinded)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, TokenResponse{BlindSignature: sig})
	return nil
}

// handleBallot takes an anonymous ballot. It refuses a request that
// carries a session or cookies: the server must not be handed anything
// that names the voter next to the ballot, even by a careless client.
func (s *Service) handleBallot(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
		return ErrSessionPresent
	}
	var req BallotRequest
	if err := web.DecodeJSON(w, r, &req, maxBallotBody); err != nil {
		return err
	}
	if req.Token == nil {
		return invalidf("an anonymous ballot carries its token")
	}
	if err := checkBallotKey(r, req.Ciphertext); err != nil {
		return err
	}
	rec, err := s.CastAnonymous(r.Context(), r.PathValue("id"), req.Token, req.Ciphertext)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, rec)
	return nil
}

// checkBallotKey refuses a ballot whose Idempotency-Key, if sent, is not
// its own (BallotIdempotencyKey).
func checkBallotKey(r *http.Request, ciphertext []byte) error {
	return web.CheckIdempotencyKey(r.Header, BallotIdempotencyKey(ciphertext), "the hex SHA-256 of ciphertext")
}

func (s *Service) handleNamedBallot(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req BallotRequest
	if err := web.DecodeJSON(w, r, &req, maxBallotBody); err != nil {
		return err
	}
	if req.Token != nil {
		return invalidf("a named ballot carries no token")
	}
	if err := checkBallotKey(r, req.Ciphertext); err != nil {
		return err
	}
	rec, err := s.CastNamed(r.Context(), *c, r.PathValue("id"), req.Ciphertext)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, rec)
	return nil
}

func (s *Service) handleBoard(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	after, limit := int64(0), MaxBoardPage
	q := r.URL.Query()
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return invalidf("after must be a number")
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalidf("limit must be a number")
		}
		limit = n
	}
	p, err := s.Page(r.Context(), r.PathValue("id"), after, limit)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (s *Service) handleClose(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req SignedClosing
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	if err := s.CloseEarly(r.Context(), *c, r.PathValue("id"), &req); err != nil {
		return err
	}
	sv, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, sv)
	return nil
}

func (s *Service) handleTally(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req TallyRequest
	if err := web.DecodeJSON(w, r, &req, maxSmallBody); err != nil {
		return err
	}
	res, err := s.Tally(r.Context(), *c, r.PathValue("id"), req.TallyKey)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (s *Service) handleResult(w http.ResponseWriter, r *http.Request, c *Caller) error {
	res, err := s.Result(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (s *Service) statement(r *http.Request, c *Caller) (*Statement, error) {
	res, err := s.Result(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return VerifyResult(res, s.roots)
}

func (s *Service) handleResultCSV(w http.ResponseWriter, r *http.Request, c *Caller) error {
	st, err := s.statement(r, c)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, st); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+st.Result.SurveyID+`.csv"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b.Bytes())
	return nil
}

func (s *Service) handleResultSVG(w http.ResponseWriter, r *http.Request, c *Caller) error {
	st, err := s.statement(r, c)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := WriteSVG(&b, st); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	// An SVG may carry script; this one never does, and the policy makes
	// sure a browser would not run any.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b.Bytes())
	return nil
}
