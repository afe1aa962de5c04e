// Package client is the Go client of kanal's case inbox API
// (miniapps/cases): registering a form submission, and the agents'
// listing, assigning and status changes.
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
	"github.com/kanal-server/kanal/miniapps/cases"
)

// maxAnswer bounds an answer's size: a full page of the inbox.
const maxAnswer = 2 << 20

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
		return fmt.Errorf("cases/client: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return (*idclient.Problem)(apiclient.ProblemOf(resp, b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("cases/client: %s %s: %w", method, path, err)
	}
	return nil
}

// Open registers a submission to org and returns its case.
func (c *Client) Open(ctx context.Context, org string, r cases.OpenRequest) (*cases.Case, error) {
	var out cases.CaseResponse
	if err := c.do(ctx, http.MethodPost, "/v1/orgs/"+url.PathEscape(org)+"/cases", r, &out); err != nil {
		return nil, err
	}
	return out.Case, nil
}

// List returns one page of org's inbox.
func (c *Client) List(ctx context.Context, org string, f cases.Filter) (*cases.CaseList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"status": f.Status, "assignee": f.Assignee, "after": f.After} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out cases.CaseList
	if err := c.do(ctx, http.MethodGet, "/v1/orgs/"+url.PathEscape(org)+"/cases?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get returns a case with its history.
func (c *Client) Get(ctx context.Context, id string) (*cases.CaseResponse, error) {
	var out cases.CaseResponse
	if err := c.do(ctx, http.MethodGet, "/v1/cases/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Assign gives the case to an agent.
func (c *Client) Assign(ctx context.Context, id, assignee string) (*cases.Case, error) {
	var out cases.CaseResponse
	if err := c.do(ctx, http.MethodPost, "/v1/cases/"+url.PathEscape(id)+"/assign", cases.AssignRequest{Assignee: assignee}, &out); err != nil {
		return nil, err
	}
	return out.Case, nil
}

// SetStatus moves the case to status.
func (c *Client) SetStatus(ctx context.Context, id, status string) (*cases.Case, error) {
	var out cases.CaseResponse
	if err := c.do(ctx, http.MethodPost, "/v1/cases/"+url.PathEscape(id)+"/status", cases.StatusRequest{Status: status}, &out); err != nil {
		return nil, err
	}
	return out.Case, nil
}

// FeeAccount returns the account org's form fees are paid to.
func (c *Client) FeeAccount(ctx context.Context, org string) (*cases.FeeAccount, error) {
	var out cases.FeeAccount
	if err := c.do(ctx, http.MethodGet, "/v1/orgs/"+url.PathEscape(org)+"/fee-account", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetFeeAccount sets the account org's form fees are paid to.
func (c *Client) SetFeeAccount(ctx context.Context, org string, a cases.FeeAccount) (*cases.FeeAccount, error) {
	var out cases.FeeAccount
	if err := c.do(ctx, http.MethodPut, "/v1/orgs/"+url.PathEscape(org)+"/fee-account", a, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
