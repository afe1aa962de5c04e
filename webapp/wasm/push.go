//go:build js && wasm

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"syscall/js"

	"github.com/kanal-server/kanal/internal/apiclient"
)

// maxPushAnswer caps what is read of an answer of the push routes; they
// answer with an endpoint (at most 1024 bytes) or a problem.
const maxPushAnswer = 16 << 10

// pushSubscription(method, subscriptionJSON) registers (PUT), reads (GET)
// or removes (DELETE) this device's web push subscription with kanald
// (docs/push.md), with the device's session token, which never leaves Go.
// The shell (push.js) passes what PushSubscription.toJSON() gives; kanald
// validates it. It resolves to kanald's answer ("" for 204).
func (a *app) pushSubscription(args []js.Value) (any, error) {
	method := args[0].String()
	var body any
	switch method {
	case http.MethodPut:
		raw := json.RawMessage(args[1].String())
		if !json.Valid(raw) {
			return nil, errors.New("push subscription: not JSON")
		}
		body = raw
	case http.MethodGet, http.MethodDelete:
	default:
		return nil, fmt.Errorf("push subscription: no method %q", method)
	}
	a.mu.Lock()
	tok := a.token
	a.mu.Unlock()
	if tok == "" {
		return nil, errors.New("not unlocked")
	}
	req, err := apiclient.NewRequest(context.Background(), method, a.base+"/v1/push/subscription", body, tok)
	if err != nil {
		return nil, err
	}
	resp, err := apiclient.Do(http.DefaultClient, req, a.base)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, maxPushAnswer)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		p := apiclient.ProblemOf(resp, b)
		if p.Detail != "" {
			return nil, fmt.Errorf("%s: %s", p.Title, p.Detail)
		}
		return nil, fmt.Errorf("push subscription: %s", resp.Status)
	}
	return string(b), nil
}
