package vault

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/internal/web"
)

// Problem types of the vault API.
var (
	TypeDocumentTooLarge = web.NewType("document-too-large")
	TypeQuotaExceeded    = web.NewType("quota-exceeded")
	TypeNotAccountDevice = web.NewType("not-account-device")
	TypeNotParty         = web.NewType("not-conversation-party")
)

// Auth is how the HTTP edge authenticates; kanald wires identity's.
type Auth struct {
	// Session protects a route with a session.
	Session func(h http.Handler) http.Handler
	// Caller returns the session's actor.
	Caller func(ctx context.Context) (Actor, bool)
}

// Route is one registered route and who may call it.
type Route struct {
	Pattern string
	Auth    string
}

type route struct {
	pattern string
	h       func(w http.ResponseWriter, r *http.Request, a Actor) error
}

func (s *Service) routes() []route {
	return []route{
		{"POST /v1/vault/documents", s.handlePut},
		{"GET /v1/vault/documents", s.handleList},
		{"GET /v1/vault/documents/{id}", s.handleDocument},
		{"DELETE /v1/vault/documents/{id}", s.handleDelete},
		{"POST /v1/vault/documents/{id}/versions", s.handleAddVersion},
		{"GET /v1/vault/documents/{id}/versions/{version}/content", s.handleContent},
		{"POST /v1/vault/documents/{id}/shares", s.handleShare},
		{"POST /v1/vault/issued", s.handleIssue},
		{"GET /v1/vault/rewrap", s.handleRewrap},
		{"POST /v1/vault/keys", s.handleAddKeys},
		{"GET /v1/vault/shares", s.handleShares},
		{"DELETE /v1/vault/shares/{id}", s.handleUnshare},
	}
}

// Routes lists the routes Register adds; every one needs a session.
func (s *Service) Routes() []Route {
	var out []Route
	for _, r := range s.routes() {
		out = append(out, Route{Pattern: r.pattern, Auth: "session"})
	}
	return out
}

// Register adds the vault routes to mux, each behind a session.
func (s *Service) Register(mux *http.ServeMux, auth Auth) {
	for _, rt := range s.routes() {
		f := rt.h
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, ok := auth.Caller(r.Context())
			if !ok || a.AccountID == "" || a.DeviceID == "" {
				web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required", "a device session is required"))
				return
			}
			if err := f(w, r, a); err != nil {
				web.Fail(w, r, s.log, "vault", err, problem)
			}
		})
		mux.Handle(rt.pattern, auth.Session(h))
	}
}

// problem maps a domain error to its problem, or nil for an internal one.
func problem(err error) *web.Problem {
	var p *web.Problem
	if errors.As(err, &p) {
		return p
	}
	detail := web.Detail(err)
	switch {
	case errors.Is(err, ErrTooLarge):
		return web.Errorf(http.StatusRequestEntityTooLarge, TypeDocumentTooLarge, "Document too large", "%s", detail)
	case errors.Is(err, ErrQuota):
		return web.Errorf(http.StatusInsufficientStorage, TypeQuotaExceeded, "Over the quota", "%s", detail)
	case errors.Is(err, ErrDevice):
		return web.Errorf(http.StatusUnprocessableEntity, TypeNotAccountDevice, "Not a device of the account", "%s", detail)
	case errors.Is(err, ErrNotParty):
		return web.Errorf(http.StatusForbidden, TypeNotParty, "Not in the conversation", "%s", detail)
	case errors.Is(err, ErrInvalid):
		return web.Errorf(http.StatusUnprocessableEntity, web.TypeValidation, "Invalid request", "%s", detail)
	case errors.Is(err, ErrNotFound):
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "Not found", "%s", detail)
	case errors.Is(err, ErrForbidden):
		return web.Errorf(http.StatusForbidden, web.TypeForbidden, "Forbidden", "%s", detail)
	}
	return nil
}

// upload reads a multipart/form-data body: a "meta" part (PutRequest,
// JSON) and then a "content" part (the ciphertext), and hands both to
// store, which streams the content to the blob store.
func (s *Service) upload(w http.ResponseWriter, r *http.Request, store func(in PutRequest, content io.Reader) (*Document, error)) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return web.Errorf(http.StatusUnsupportedMediaType, web.TypeUnsupportedMedia, "Unsupported media type",
			"send multipart/form-data with a meta part and a content part")
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxDoc+MaxBody)
	mr, err := r.MultipartReader()
	if err != nil {
		return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Bad upload", "the multipart body does not parse")
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "meta" {
		return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Bad upload", "the first part must be meta")
	}
	raw, err := io.ReadAll(io.LimitReader(part, MaxBody+1))
	if err != nil {
		return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Bad upload", "the meta part does not read")
	}
	var in PutRequest
	if err := web.DecodeStrict(raw, &in, MaxBody); err != nil {
		return err
	}
	if in.Size > s.maxDoc {
		return s.check(&in) // the size limit, before any content is read
	}
	part, err = mr.NextPart()
	if err != nil || part.FormName() != "content" {
		return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Bad upload", "the second part must be content")
	}
	d, err := store(in, part)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return web.Errorf(http.StatusRequestEntityTooLarge, TypeDocumentTooLarge, "Document too large", "the body is over %d bytes", s.maxDoc+MaxBody)
		}
		return err
	}
	web.WriteJSON(w, http.StatusCreated, d)
	return nil
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request, a Actor) error {
	return s.upload(w, r, func(in PutRequest, c io.Reader) (*Document, error) { return s.Put(r.Context(), a, in, c) })
}

func (s *Service) handleAddVersion(w http.ResponseWriter, r *http.Request, a Actor) error {
	return s.upload(w, r, func(in PutRequest, c io.Reader) (*Document, error) {
		return s.AddVersion(r.Context(), a, r.PathValue("id"), in, c)
	})
}

func (s *Service) handleIssue(w http.ResponseWriter, r *http.Request, a Actor) error {
	return s.upload(w, r, func(in PutRequest, c io.Reader) (*Document, error) { return s.Issue(r.Context(), a, in, c) })
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request, a Actor) error {
	l, err := s.List(r.Context(), a)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, l)
	return nil
}

func (s *Service) handleDocument(w http.ResponseWriter, r *http.Request, a Actor) error {
	d, err := s.Document(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, d)
	return nil
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request, a Actor) error {
	if err := s.Delete(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleContent(w http.ResponseWriter, r *http.Request, a Actor) error {
	v, err := strconv.Atoi(r.PathValue("version"))
	if err != nil || v < 1 {
		return invalid("version must be a positive number")
	}
	rc, ver, err := s.Content(r.Context(), a, r.PathValue("id"), v)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(ver.Size, 10))
	h.Set("X-Content-SHA256", ver.SHA256)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, err = io.Copy(w, rc)
	return err
}

func (s *Service) handleShare(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in ShareRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	sh, err := s.Share(r.Context(), a, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, sh)
	return nil
}

func (s *Service) handleUnshare(w http.ResponseWriter, r *http.Request, a Actor) error {
	sh, err := s.Unshare(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, sh)
	return nil
}

func (s *Service) handleShares(w http.ResponseWriter, r *http.Request, a Actor) error {
	l, err := s.Shares(r.Context(), a, r.URL.Query().Get("org"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, l)
	return nil
}

func (s *Service) handleRewrap(w http.ResponseWriter, r *http.Request, a Actor) error {
	l, err := s.PendingRewraps(r.Context(), a)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, l)
	return nil
}

func (s *Service) handleAddKeys(w http.ResponseWriter, r *http.Request, a Actor) error {
	var in AddKeysRequest
	if err := web.DecodeJSON(w, r, &in, MaxBody); err != nil {
		return err
	}
	out, err := s.AddKeys(r.Context(), a, in)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}
