package web

import (
	"log/slog"
	"net/http"
)

// NewServer returns an http.Server with kanal's timeouts and limits.
// Websocket handlers clear the read and write deadlines after upgrading.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// NotFound answers every request no other pattern matched with a problem.
func NotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, Errorf(http.StatusNotFound, TypeNotFound, "Not found", "no route for %s %s", r.Method, r.URL.Path))
	})
}
