package push_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/push"
	"github.com/kanal-server/kanal/messaging/push/pushtest"
)

var sets = []db.Migrations{mailbox.Migrations(), push.Migrations()}

type deviceKey struct{}

// headerAuth stands in for identity's session middleware: the device is
// named by a test header, and a request without one is refused before the
// handler runs, as RequireSession does.
var headerAuth = push.Auth{
	Require: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := r.Header.Get("X-Test-Device")
			if d == "" {
				web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Unauthorized", "no session"))
				return
			}
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, d)))
		})
	},
	Device: func(ctx context.Context) (string, bool) {
		d, ok := ctx.Value(deviceKey{}).(string)
		return d, ok
	},
}

// fixture is a push service on a real database with a real mailbox store,
// sending to a test push service.
type fixture struct {
	svc     *push.Service
	mbox    *mailbox.Store
	ps      *pushtest.Server
	d       *db.DB
	sealKey []byte
	stop    func()
}

// testOptions are short timings so the tests wait milliseconds, not seconds.
func testOptions(d *db.DB, mbox *mailbox.Store, ps *pushtest.Server, sealKey []byte) push.Options {
	return push.Options{DB: d, Logger: testLogger(), Auth: headerAuth,
		SealKey: sealKey, Subject: "mailto:ops@example.org", AllowedHosts: push.HostList{"127.0.0.1"},
		Pending: mbox.PendingClasses, Newest: mbox.Newest, HTTPClient: ps.Client(),
		Grace: 100 * time.Millisecond, MinInterval: time.Second, PollInterval: 25 * time.Millisecond,
		RequestTimeout: 2 * time.Second, BaseBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}
}

func newFixture(t testing.TB, d *db.DB, mod func(*push.Options)) *fixture {
	t.Helper()
	f := &fixture{mbox: mailbox.NewStore(d, mailbox.StoreOptions{}), ps: pushtest.New(t), d: d, sealKey: make([]byte, 32)}
	rand.Read(f.sealKey)
	o := testOptions(d, f.mbox, f.ps, f.sealKey)
	if mod != nil {
		mod(&o)
	}
	var err error
	if f.svc, err = push.New(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	f.stop = f.start(t, f.svc)
	return f
}

// start runs svc until the returned stop (or the test's end).
func (f *fixture) start(t testing.TB, svc *push.Service) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); svc.Run(ctx) }()
	<-svc.Recovered()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// deliver appends an envelope of class for device, as a send does, and
// notifies the service after the commit.
func (f *fixture) deliver(t testing.TB, device, class string) mailbox.Envelope {
	t.Helper()
	envs := []mailbox.Envelope{{Recipient: device, Sender: "sender-dev", Conversation: "conv", Class: class, Ciphertext: []byte("sealed")}}
	if err := f.mbox.Append(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	f.svc.Notify(device)
	return envs[0]
}

func (f *fixture) subscribe(t testing.TB, device string) *pushtest.Subscriber {
	t.Helper()
	sub := f.ps.Subscribe(t)
	if _, err := f.svc.Subscribe(context.Background(), device, sub.Request()); err != nil {
		t.Fatal(err)
	}
	return sub
}

func delivered(ps []pushtest.Push) (n int) {
	for _, p := range ps {
		if p.Status == http.StatusCreated {
			n++
		}
	}
	return n
}

// testLogger discards, unless PUSH_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("PUSH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
