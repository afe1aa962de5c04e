// Package client is the Go client of kanal's catalogue of form templates:
// publish a signed template, list the catalogue, fetch a version (which
// the caller verifies with forms.Verify before trusting it), withdraw.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/miniapps/forms"
)

// maxAnswer bounds an answer: a signed template with its lineage, or a page of the list.
const maxAnswer = 2 * forms.MaxSigned

// Client calls one kanald with one session token.
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
		return fmt.Errorf("forms/client: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return (*idclient.Problem)(apiclient.ProblemOf(resp, b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("forms/client: %s %s: %w", method, path, err)
	}
	return nil
}

// Publish publishes a signed template version.
func (c *Client) Publish(ctx context.Context, s forms.Signed) (*forms.Entry, error) {
	var e forms.Entry
	return &e, c.do(ctx, http.MethodPost, "/v1/forms/templates", s, &e)
}

// List lists the catalogue (see forms.ListOptions).
func (c *Client) List(ctx context.Context, o forms.ListOptions) ([]forms.Summary, error) {
	q := url.Values{}
	for k, v := range map[string]string{"id": o.ID, "org": o.OrgID, "after": o.After} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Withdrawn {
		q.Set("withdrawn", "true")
	}
	path := "/v1/forms/templates"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out forms.ListResponse
	return out.Templates, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Get fetches a template version ("latest" for the newest not
// withdrawn); withdrawn also returns a withdrawn one. The answer is the
// server's word: verify Signed with forms.Verify before using it.
func (c *Client) Get(ctx context.Context, id, version string, withdrawn bool) (*forms.Entry, error) {
	path := "/v1/forms/templates/" + url.PathEscape(id) + "/" + url.PathEscape(version)
	if withdrawn {
		path += "?withdrawn=true"
	}
	var e forms.Entry
	return &e, c.do(ctx, http.MethodGet, path, nil, &e)
}

// Withdraw withdraws a template version.
func (c *Client) Withdraw(ctx context.Context, id, version string) (*forms.Summary, error) {
	var s forms.Summary
	return &s, c.do(ctx, http.MethodPost, "/v1/forms/templates/"+url.PathEscape(id)+"/"+url.PathEscape(version)+"/withdraw", struct{}{}, &s)
}
