package vault_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/vault"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// world stands in for identity and messaging, the two things the vault
// asks: which devices an account has, who is an agent of which
// organisation, and which conversation is whose.
type world struct {
	mu      sync.Mutex
	devices map[string][]string // account → active devices
	roles   map[string]string   // org/account → role
}

func (w *world) AccountDevices(_ context.Context, account string) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.devices[account]...), nil
}

func (w *world) OrgRole(_ context.Context, org, account string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.roles[org+"/"+account], nil
}

func directConv(a, b string) string {
	s := []string{a, b}
	sort.Strings(s)
	return "d_" + s[0] + "_" + s[1]
}

func orgConv(org, account string) string { return "o_" + org + "_" + account }

func (w *world) Between(_ context.Context, conv, owner, account, org string) (bool, error) {
	if account != "" {
		return conv == directConv(owner, account), nil
	}
	return conv == orgConv(org, owner), nil
}

// withdrawals records the notifier's calls.
type withdrawals struct {
	mu  sync.Mutex
	got []vault.Share
}

func (n *withdrawals) Withdrawn(_ context.Context, s vault.Share) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, s)
	return nil
}

// env is one vault behind a real HTTP server, on one database and one
// blob store.
type env struct {
	t     testing.TB
	srv   *httptest.Server
	svc   *vault.Service
	d     *db.DB
	blobs vault.Blobs
	w     *world
	notes *withdrawals
	keys  map[string]keys.IdentityPrivate // device → identity key
	owner map[string]string               // device → account
}

type envOptions struct {
	maxDoc, quota int64
}

func newEnv(t testing.TB, d *db.DB, blobs vault.Blobs, o envOptions) *env {
	e := &env{t: t, d: d, blobs: blobs, w: &world{devices: map[string][]string{}, roles: map[string]string{}},
		notes: &withdrawals{}, keys: map[string]keys.IdentityPrivate{}, owner: map[string]string{}}
	svc, err := vault.New(vault.Options{DB: d, Blobs: blobs, Directory: e.w, Conversations: e.w, Notifier: e.notes,
		MaxDocument: o.maxDoc, Quota: o.quota})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	mux := http.NewServeMux()
	svc.Register(mux, vault.Auth{
		Session: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
				if _, ok := e.owner[tok]; !ok {
					web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Authentication required", "no session"))
					return
				}
				h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, tok)))
			})
		},
		Caller: func(ctx context.Context) (vault.Actor, bool) {
			dev, ok := ctx.Value(actorKey{}).(string)
			return vault.Actor{AccountID: e.owner[dev], DeviceID: dev}, ok
		},
	})
	e.srv = httptest.NewServer(web.Handler(mux, web.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(e.srv.Close)
	return e
}

type actorKey struct{}

// device enrols a device of account (its session token is its id) and
// returns its vault client.
func (e *env) device(account, dev string) *vclient.Client {
	e.t.Helper()
	k, err := keys.GenerateIdentity(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.w.mu.Lock()
	e.w.devices[account] = append(e.w.devices[account], dev)
	e.w.mu.Unlock()
	e.keys[dev], e.owner[dev] = k, account
	c, err := vclient.New(vclient.Options{BaseURL: e.srv.URL, Token: dev, DeviceID: dev, Device: k})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// recipients are the devices of account, with their keys.
func (e *env) recipients(account string) []vclient.Recipient {
	var out []vclient.Recipient
	for _, dev := range e.w.devices[account] {
		out = append(out, vclient.Recipient{Device: dev, Key: e.keys[dev].Public()})
	}
	return out
}

// stores runs fn against each blob store: the data directory and, when
// a weed binary is at hand, SeaweedFS's S3 API.
func stores(t *testing.T, fn func(t *testing.T, d *db.DB, b vault.Blobs)) {
	t.Run("dir", func(t *testing.T) {
		dbtest.Run(t, []db.Migrations{vault.Migrations()}, func(t *testing.T, d *db.DB) {
			b, err := vault.NewDirBlobs(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			fn(t, d, b)
		})
	})
	t.Run("s3", func(t *testing.T) {
		dbtest.Run(t, []db.Migrations{vault.Migrations()}, func(t *testing.T, d *db.DB) {
			fn(t, d, s3Blobs(t))
		})
	})
}
