package apiclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestNewRequest(t *testing.T) {
	req, err := NewRequest(context.Background(), "POST", "http://127.0.0.1/v1/x", map[string]int{"n": 1}, "tok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(req.Body)
	if string(b) != `{"n":1}` || req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Authorization") != "Bearer tok" {
		t.Fatalf("request: %s %v", b, req.Header)
	}
	req, err = NewRequest(context.Background(), "GET", "http://127.0.0.1/v1/x", nil, "")
	if err != nil || req.Body != nil || req.Header.Get("Content-Type") != "" || req.Header.Get("Authorization") != "" {
		t.Fatalf("bare request: %v %v", req.Header, err)
	}
	if _, err := NewRequest(context.Background(), "POST", "http://127.0.0.1/", func() {}, ""); err == nil {
		t.Fatal("unencodable body accepted")
	}
}

func TestCheckBase(t *testing.T) {
	for _, base := range []string{"https://kanal.example.de", "http://127.0.0.1:8080"} {
		if err := CheckBase(base); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
	for _, base := range []string{"", "kanal.example.de", "ftp://kanal.example.de", "http://"} {
		if err := CheckBase(base); err == nil {
			t.Errorf("%q accepted", base)
		}
	}
}

func TestReadCapped(t *testing.T) {
	if b, err := ReadCapped(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the cap: %q %v", b, err)
	}
	if _, err := ReadCapped(strings.NewReader("123456"), 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the cap: %v", err)
	}
}

func TestDecodeStrict(t *testing.T) {
	var v struct{ A int }
	if err := DecodeStrict([]byte(`{"A":1}`+"\n"), &v); err != nil || v.A != 1 {
		t.Fatalf("%+v %v", v, err)
	}
	for _, bad := range []string{`{"A":1} {}`, `{"A":1,"B":2}`, `{"A":`, ``} {
		if err := DecodeStrict([]byte(bad), &v); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProblemOf(t *testing.T) {
	answer := func(ct string) *http.Response {
		return &http.Response{StatusCode: 409, Header: http.Header{"Content-Type": {ct}}}
	}
	p := ProblemOf(answer("application/problem+json; charset=utf-8"),
		[]byte(`{"type":"urn:kanal:problem:conflict","title":"Conflict","status":400,"detail":"d","instance":"/i"}`))
	if p.Type != "urn:kanal:problem:conflict" || p.Title != "Conflict" || p.Status != 409 || p.Detail != "d" || p.Instance != "/i" || p.Extra != nil {
		t.Fatalf("problem+json: %+v", p)
	}
	for name, tc := range map[string]struct{ ct, body string }{
		"no type":     {"application/problem+json", `{"title":"Conflict"}`},
		"not a JSON":  {"application/problem+json", `<html>`},
		"not problem": {"text/html", `{"type":"urn:x"}`},
	} {
		if p := ProblemOf(answer(tc.ct), []byte(tc.body)); p.Type != BlankType || p.Status != 409 {
			t.Errorf("%s: %+v", name, p)
		}
	}
}
