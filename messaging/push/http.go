package push

import (
	"errors"
	"net/http"

	"github.com/kanal-server/kanal/internal/web"
)

// Problem types of the push routes.
var (
	TypeInvalidSubscription = web.NewType("invalid-subscription")  // malformed endpoint or keys
	TypeHostNotAllowed      = web.NewType("push-host-not-allowed") // endpoint host not on the operator's list, or not public
	TypeNoSubscription      = web.NewType("no-subscription")       // the device has none
)

// VAPIDKeyResponse is the body of GET /v1/push/vapid-key.
type VAPIDKeyResponse struct {
	PublicKey string `json:"public_key"` // base64url; the applicationServerKey
}

// SubscriptionResponse answers PUT and GET /v1/push/subscription.
type SubscriptionResponse struct {
	Endpoint string `json:"endpoint"`
}

// Register adds the push routes to mux:
//
//	GET    /v1/push/vapid-key     public: the VAPID public key
//	PUT    /v1/push/subscription  the calling device's subscription (201 new, 200 replaced)
//	GET    /v1/push/subscription  its endpoint, or 404 no-subscription
//	DELETE /v1/push/subscription  removes it (204, also when there was none)
//
// Subscription routes act for the session's own device only: there is no
// device id in a path or body to get wrong.
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("GET /v1/push/vapid-key", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		web.WriteJSON(w, http.StatusOK, VAPIDKeyResponse{PublicKey: s.vapid.public})
	}))
	mux.Handle("PUT /v1/push/subscription", s.o.Auth.Require(s.handler(s.handlePut)))
	mux.Handle("GET /v1/push/subscription", s.o.Auth.Require(s.handler(s.handleGet)))
	mux.Handle("DELETE /v1/push/subscription", s.o.Auth.Require(s.handler(s.handleDelete)))
}

func (s *Service) handler(f func(w http.ResponseWriter, r *http.Request, device string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		device, ok := s.o.Auth.Device(r.Context())
		if !ok || device == "" {
			web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required",
				"a device session is required"))
			return
		}
		if err := f(w, r, device); err != nil {
			if p := problem(err); p != nil {
				web.WriteProblem(w, r, p)
				return
			}
			s.o.Logger.ErrorContext(r.Context(), "push", "request_id", web.RequestID(r.Context()), "route", r.Pattern, "err", err)
			web.WriteError(w, r, err)
		}
	})
}

func problem(err error) *web.Problem {
	var p *web.Problem
	switch {
	case errors.As(err, &p):
		return p
	case errors.Is(err, ErrInvalid):
		return web.Errorf(http.StatusBadRequest, TypeInvalidSubscription, "Invalid push subscription", "%s", web.Detail(err))
	case errors.Is(err, ErrHostNotAllowed):
		return web.Errorf(http.StatusBadRequest, TypeHostNotAllowed, "Push service not allowed", "%s", web.Detail(err))
	case errors.Is(err, ErrNoSubscription):
		return web.Errorf(http.StatusNotFound, TypeNoSubscription, "No push subscription", "this device has no push subscription")
	}
	return nil
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request, device string) error {
	var req SubscriptionRequest
	if err := web.DecodeJSON(w, r, &req, maxBody); err != nil {
		return err
	}
	created, err := s.Subscribe(r.Context(), device, &req)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	web.WriteJSON(w, status, SubscriptionResponse{Endpoint: req.Endpoint})
	return nil
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request, device string) error {
	sub, err := s.store.get(r.Context(), device)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, SubscriptionResponse{Endpoint: sub.Endpoint})
	return nil
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request, device string) error {
	if err := s.Unsubscribe(r.Context(), device); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
