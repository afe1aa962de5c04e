package web

import "net/http"

// IdempotencyKeyHeader is the request header that names a POST as safe to
// repeat. On a request the server already deduplicates by a key of its
// own — a send's client_id, a token request's blinded value — the header,
// if sent, must be that key (CheckIdempotencyKey); the server reads
// nothing else from it.
//
// The header is for the HTTP client, not the server: Go's http.Transport,
// among others, sends a POST again by itself when a kept-alive connection
// was closed under it before any answer came back (the server's idle
// timeout racing the request, a proxy's restart), but only a request that
// carries this header. Without it the caller gets the bare error.
const IdempotencyKeyHeader = "Idempotency-Key"

// CheckIdempotencyKey refuses a request whose Idempotency-Key header is
// not key, the one the server deduplicates it by: a client that keys its
// retries on one value while the server goes by another could take the
// answer to another request for its own. No header is fine. what says
// what key is in the problem's detail.
func CheckIdempotencyKey(h http.Header, key, what string) error {
	vs := h.Values(IdempotencyKeyHeader)
	if len(vs) == 0 {
		return nil
	}
	if len(vs) != 1 || vs[0] != key {
		return Errorf(http.StatusBadRequest, TypeValidation, "Invalid Idempotency-Key",
			"%s, if sent, must be %s, once", IdempotencyKeyHeader, what)
	}
	return nil
}
