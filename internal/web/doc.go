// Package web is the HTTP plumbing every kanal domain shares: strict JSON
// decoding with size limits, RFC 9457 problem+json errors with stable type
// URIs, request ids, access logging, panic recovery, per-route metrics,
// the operations endpoints (/healthz, /readyz, /metrics) and tracking of
// hijacked connections so that shutdown can close them.
//
// It knows nothing about accounts, messages or payments; domains build
// their handlers on it.
package web
