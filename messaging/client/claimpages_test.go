package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/messaging"
)

// TestClaimFollowsPages: a claim answered in pages (ClaimResponse.Next)
// is followed to its end, each page asked for with After set to the
// previous page's Next; a server whose next page does not move forward
// is refused instead of followed for ever.
func TestClaimFollowsPages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pages map[string]messaging.ClaimResponse // after → answer
		want  []string                           // unpublished devices gathered
		err   string
	}{
		{"three pages", map[string]messaging.ClaimResponse{
			"":      {Unpublished: []string{"dev_a", "dev_b"}, Next: "dev_b"},
			"dev_b": {Unpublished: []string{"dev_c"}, Next: "dev_c"},
			"dev_c": {Unpublished: []string{"dev_d"}},
		}, []string{"dev_a", "dev_b", "dev_c", "dev_d"}, ""},
		{"a next that stands still", map[string]messaging.ClaimResponse{
			"":      {Unpublished: []string{"dev_a"}, Next: "dev_a"},
			"dev_a": {Unpublished: []string{"dev_a"}, Next: "dev_a"},
		}, nil, "does not follow"},
		{"an empty page with a next", map[string]messaging.ClaimResponse{
			"": {Next: "dev_z"},
		}, nil, "does not follow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req messaging.ClaimRequest
				if r.URL.Path != "/v1/prekeys/claim" || json.NewDecoder(r.Body).Decode(&req) != nil || req.OrgID != "org_office" {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				asked = append(asked, req.After)
				resp, ok := tc.pages[req.After]
				if !ok {
					http.Error(w, "no such page", http.StatusBadRequest)
					return
				}
				if resp.Bundles == nil {
					resp.Bundles = []messaging.ClaimedBundle{}
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(resp)
			}))
			defer srv.Close()
			c := &Client{base: srv.URL, hc: srv.Client(), account: "acc_me", device: "dev_me", store: NewMemoryStore()}
			tok := "t"
			c.token.Store(&tok)
			claim, err := c.ClaimOrg(context.Background(), "org_office")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("claim: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(claim.Unpublished, tc.want) || len(asked) != len(tc.pages) {
				t.Fatalf("gathered %v over pages %q", claim.Unpublished, asked)
			}
		})
	}
}
