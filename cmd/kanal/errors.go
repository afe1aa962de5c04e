package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/web"
	mclient "github.com/kanal-server/kanal/messaging/client"
)

// Errors for people. A command's error is shown as one line in the
// user's terms: the server's problem as its title and detail, without the
// prefixes of kanal's packages and without parts said twice, a closed
// stream as a sentence. With -v the technical chain follows on a second
// line: the wrapped errors as they are, and the problem's type and status.

// shownError is a command's error as kanal prints it.
type shownError struct {
	cmd     string
	err     error
	verbose bool
}

func (e *shownError) Error() string {
	s := e.cmd + ": " + sentence(e.err)
	if e.verbose {
		s += "\n  technical: " + technical(e.err)
	}
	return s
}

func (e *shownError) Unwrap() error { return e.err }

// sentence is err in the user's terms.
func sentence(err error) string {
	var stopped *mclient.StoppedError
	if errors.As(err, &stopped) {
		// A live stream's end, already said in the user's terms.
		return err.Error()
	}
	if s, ok := mclient.CloseSentence(err); ok {
		return s
	}
	text := err.Error()
	var p *idclient.Problem
	if errors.As(err, &p) {
		text = strings.Replace(text, p.Error(), problemSentence(p), 1)
	}
	return web.DetailText(text)
}

// problemSentence is a problem detail as one sentence: the detail, after
// the title unless the detail already says it; no type, no status.
func problemSentence(p *idclient.Problem) string {
	title := lowerInitial(p.Title)
	if title == "" {
		title = strings.ToLower(http.StatusText(p.Status))
	}
	detail := web.DetailText(oneLine(p.Detail))
	switch {
	case detail == "":
		return title
	case strings.HasPrefix(strings.ToLower(detail), strings.ToLower(title)):
		return detail
	}
	return title + ": " + detail
}

// technical is err's whole chain, with the problem's type and status.
func technical(err error) string {
	s := err.Error()
	var p *idclient.Problem
	if errors.As(err, &p) && !strings.Contains(s, p.Type) {
		s += fmt.Sprintf(" (%s, HTTP %d)", p.Type, p.Status)
	} else if errors.As(err, &p) {
		s += fmt.Sprintf(" (HTTP %d)", p.Status)
	}
	return s
}

// lowerInitial lowers a title's first letter unless it starts an
// initialism ("CSR rejected").
func lowerInitial(s string) string {
	if len(s) < 2 || s[0] < 'A' || s[0] > 'Z' || s[1] >= 'A' && s[1] <= 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}
