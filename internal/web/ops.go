package web

import (
	"context"
	"net/http"
	"time"
)

// Check is one readiness condition: the database answers, the bus is
// connected, migrations ran. It returns nil when ready.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Healthz answers 200 while the process is alive.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readyz answers 200 when every check passes and 503 with the failing
// check names otherwise. Causes are not shown: they go to the log.
func Readyz(checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var failing []string
		for _, c := range checks {
			if err := c.Func(ctx); err != nil {
				failing = append(failing, c.Name)
			}
		}
		if len(failing) > 0 {
			WriteProblem(w, r, Errorf(http.StatusServiceUnavailable, TypeUnavailable, "Not ready",
				"not ready: %v", failing).With("failing", failing))
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
