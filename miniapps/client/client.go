// Package client is the Go client of kanal's mini-app API: registering a
// manifest, the operator's approvals, the citizen's app list, consents
// and launches.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/miniapps"
)

const maxAnswer = 4 << 20

// Client calls one kanald with one bearer token (a session or the
// operator's).
type Client struct {
	base  string
	hc    *http.Client
	token string
}

// New returns a client for baseURL; a nil hc uses a 30 s timeout.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc, token: token}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	req, err := apiclient.NewRequest(ctx, method, c.base+path, in, c.token)
	if err != nil {
		return err
	}
	resp, err := apiclient.Do(c.hc, req, c.base)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, maxAnswer)
	if err != nil {
		return fmt.Errorf("miniapps/client: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return (*idclient.Problem)(apiclient.ProblemOf(resp, b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("miniapps/client: %s %s: %w", method, path, err)
		}
	}
	return nil
}

func seg(s string) string { return url.PathEscape(s) }

type appList struct {
	Apps []miniapps.App `json:"apps"`
}

// Register registers a signed manifest.
func (c *Client) Register(ctx context.Context, manifestJWS string) (*miniapps.Registered, error) {
	var out miniapps.Registered
	err := c.do(ctx, http.MethodPost, "/v1/apps", miniapps.RegisterRequest{Manifest: manifestJWS}, &out)
	return &out, err
}

// Apps lists the approved apps.
func (c *Client) Apps(ctx context.Context) ([]miniapps.App, error) {
	var out appList
	err := c.do(ctx, http.MethodGet, "/v1/apps", nil, &out)
	return out.Apps, err
}

// App reads an approved app.
func (c *Client) App(ctx context.Context, id string) (*miniapps.App, error) {
	var out miniapps.App
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+seg(id), nil, &out)
	return &out, err
}

// AdminApps lists every app (operator).
func (c *Client) AdminApps(ctx context.Context) ([]miniapps.App, error) {
	var out appList
	err := c.do(ctx, http.MethodGet, "/v1/admin/apps", nil, &out)
	return out.Apps, err
}

// Approve approves an app's latest version (operator).
func (c *Client) Approve(ctx context.Context, id string) (*miniapps.App, error) {
	var out miniapps.App
	err := c.do(ctx, http.MethodPost, "/v1/admin/apps/"+seg(id)+"/approve", nil, &out)
	return &out, err
}

// Suspend suspends an app (operator).
func (c *Client) Suspend(ctx context.Context, id string) (*miniapps.App, error) {
	var out miniapps.App
	err := c.do(ctx, http.MethodPost, "/v1/admin/apps/"+seg(id)+"/suspend", nil, &out)
	return &out, err
}

// Consent grants the scopes listed and refuses the app's others.
func (c *Client) Consent(ctx context.Context, id string, grant []string) (*miniapps.ConsentState, error) {
	var out miniapps.ConsentState
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+seg(id)+"/consent", miniapps.ConsentRequest{Grant: grant}, &out)
	return &out, err
}

// Revoke revokes the consent to an app.
func (c *Client) Revoke(ctx context.Context, id string) (*miniapps.ConsentState, error) {
	var out miniapps.ConsentState
	err := c.do(ctx, http.MethodDelete, "/v1/apps/"+seg(id)+"/consent", nil, &out)
	return &out, err
}

// Consents lists the account's consents.
func (c *Client) Consents(ctx context.Context) ([]miniapps.ConsentState, error) {
	var out struct {
		Consents []miniapps.ConsentState `json:"consents"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/consents", nil, &out)
	return out.Consents, err
}

// Open opens an app: the launch URL with its launch token.
func (c *Client) Open(ctx context.Context, id, conversation string) (*miniapps.Opened, error) {
	var out miniapps.Opened
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+seg(id)+"/open", miniapps.OpenRequest{Conversation: conversation}, &out)
	return &out, err
}
