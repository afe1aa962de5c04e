package web

import "time"

// Limits shared by every route unless a route asks for less.
const (
	// MaxBodyBytes caps a JSON request body. Routes that carry ciphertext
	// pass their own, larger or smaller, cap to DecodeJSON.
	MaxBodyBytes = 1 << 20

	// MaxHeaderBytes caps the request line and headers.
	MaxHeaderBytes = 64 << 10

	// ReadHeaderTimeout bounds how long a client may take to send headers,
	// which is what slowloris-style clients abuse.
	ReadHeaderTimeout = 5 * time.Second

	// ReadTimeout bounds reading a whole request. Websockets clear it after
	// the upgrade.
	ReadTimeout = 30 * time.Second

	// WriteTimeout bounds writing a response. Long-lived streams clear it.
	WriteTimeout = 30 * time.Second

	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout = 120 * time.Second
)
