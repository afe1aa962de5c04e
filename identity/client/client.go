package client

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/kanal-server/kanal/internal/apiclient"
)

// Client talks to one kanal server's identity API. It is safe for
// concurrent use; WithToken returns a copy rather than changing it.
type Client struct {
	base  string // scheme://host[/prefix], no trailing slash
	hc    *http.Client
	token string
	// device and key are the session's device, which approves further
	// devices with its key (see WithDevice).
	device string
	key    crypto.Signer
}

// New returns a client for the server at baseURL ("https://kanal.example.de").
// A nil httpClient means a client with DefaultTimeout. A malformed baseURL
// is reported by the first call.
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: httpClient}
}

// WithToken returns a copy of c that authenticates with the bearer token
// (a setup token, a session token or the operator token). An empty token
// sends none.
func (c *Client) WithToken(token string) *Client {
	d := *c
	d.token = token
	return &d
}

// WithDevice returns a copy of c that knows the session's device and its
// key, with which it approves the enrolment of further devices
// (EnrollDevice, EnrollCSR with a session): the server does not take a
// session alone as approval.
func (c *Client) WithDevice(deviceID string, key crypto.Signer) *Client {
	d := *c
	d.device, d.key = deviceID, key
	return &d
}

// BaseURL returns the server address the client was made with.
func (c *Client) BaseURL() string { return c.base }

// do sends one request. in, when not nil, is sent as JSON; out, when not
// nil, receives the strictly decoded JSON answer. want is the success
// status; any other 2xx is as much an error as a 4xx, since the client
// would not know what it means.
func (c *Client) do(ctx context.Context, method, path string, in, out any, want int) error {
	return c.doCapped(ctx, method, path, in, out, want, MaxResponseBytes)
}

// doCapped is do with a cap of max bytes on the answer.
func (c *Client) doCapped(ctx context.Context, method, path string, in, out any, want, max int) error {
	if err := apiclient.CheckBase(c.base); err != nil {
		return err
	}
	req, err := apiclient.NewRequest(ctx, method, c.base+path, in, c.token)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := apiclient.Do(c.hc, req, c.base)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes))
			return fmt.Errorf("%w: status %d, want %d", ErrBadResponse, resp.StatusCode, want)
		}
		return readProblem(resp)
	}
	if out == nil {
		// 202 and 204 carry nothing the client needs; drain a little so
		// the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes))
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("%w: content type %q, want application/json", ErrBadResponse, resp.Header.Get("Content-Type"))
	}
	b, err := readCapped(resp.Body, max)
	if err != nil {
		return err
	}
	return decodeStrict(b, out)
}

// segment escapes an id for use as one path segment, so that an id can
// never reach another route.
func segment(id string) (string, error) {
	if id == "" || id == "." || id == ".." {
		return "", fmt.Errorf("invalid id %q", id)
	}
	return url.PathEscape(id), nil
}
