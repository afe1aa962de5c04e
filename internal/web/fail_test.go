package web

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Fail writes a mapped error as its problem, and anything else as an
// internal error whose cause goes to the log, never to the client.
func TestFail(t *testing.T) {
	errKnown := errors.New("known: the widget is sprocketed")
	toProblem := func(err error) *Problem {
		if errors.Is(err, errKnown) {
			return Errorf(http.StatusConflict, TypeConflict, "Sprocketed", "%v", err)
		}
		return nil
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := httptest.NewRequest("GET", "/x", nil)

	w := httptest.NewRecorder()
	Fail(w, r, log, "widgets", errKnown, toProblem)
	if w.Code != 409 || !strings.Contains(w.Body.String(), "sprocketed") || logs.Len() != 0 {
		t.Fatalf("mapped: %d %s, logged %q", w.Code, w.Body, logs.String())
	}

	w = httptest.NewRecorder()
	Fail(w, r, log, "widgets", errors.New("pq: relation secret_table does not exist"), toProblem)
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret_table") || !strings.Contains(logs.String(), "secret_table") {
		t.Fatalf("internal: %d %s, logged %q", w.Code, w.Body, logs.String())
	}
}
