// Package client is a Go client for kanal's identity API: sign-up, passwords,
// device enrolment and certificates, challenge-response login with a device
// key, sessions, organisations and the public directory.
//
// A Client is cheap and immutable: WithToken returns a copy that sends a
// bearer token (a setup token, a session token or the operator token), so
// one base Client can serve several credentials at once.
//
// Every call takes a context and returns either a decoded response or an
// error. An error answer from the server is a *Problem carrying the RFC 9457
// type, title, status and detail; callers branch on Problem.Type (see
// IsProblem), never on the title or the detail. Responses are decoded
// strictly: a body larger than MaxResponseBytes, a field the client does not
// know, or trailing data is an error, so a client never acts on an answer it
// only half understood.
//
// The package is a library: it never logs, prompts or exits. Private keys
// stay with the caller, who passes a crypto.Signer; the client only asks it
// to sign a certificate request or a login challenge.
package client
