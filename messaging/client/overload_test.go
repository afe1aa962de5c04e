package client_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging/client"
)

// TestSendOverloaded: kanald with a deliberately tiny admission bound
// (KANAL_SEND_QUEUE_MAX=1: a send is refused while anything else waits in
// the group commit). The database is held locked for a moment, so the
// first send of a burst waits in the commit and the others of the burst
// are refused with 503 overloaded — over HTTP (alice) and on the stream
// (carol) — and refused again while the lock lasts. Every send still
// succeeds through the SDK's retries, each is stored once (one
// idempotency row per message, no message twice at bob), and bob gets
// each sender's messages in the order they were sent.
func TestSendOverloaded(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		s := startKanald(t, postgres, "KANAL_SEND_QUEUE_MAX=1")
		srv := s.Server
		alice, bob, _, _ := pair(t, srv)
		carol := signUp(t, s, "carol@example.org", true)
		a := newPhone(t, "alice", alice, srv.URL, client.NewMemoryStore())
		c := newPhone(t, "carol", carol, srv.URL, client.NewMemoryStore())
		b := newPhone(t, "bob", bob, srv.URL, client.NewMemoryStore())
		b.connect(context.Background())
		c.connect(context.Background())
		defer b.disconnect()
		defer c.disconnect()
		toBob := client.Peer{AccountID: bob.AccountID}
		ctx := context.Background()

		// Sessions and profiles first, one send at a time: nothing else
		// is in the queue, so nothing is refused.
		if _, err := a.sdk.Send(ctx, toBob, textMsg(t, "a-warm")); err != nil {
			t.Fatal(err)
		}
		c.send(toBob, "c-warm")
		b.waitTexts(2, func(*client.Incoming) bool { return true })
		d := openServerDB(t, s, srv)
		rows := func(dev string) int {
			var n int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM messaging_sends WHERE sender_device = $1`, dev).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		aRows, cRows := rows(alice.DeviceID), rows(carol.DeviceID)
		refused0 := refusedSends(t, srv.URL)

		release := lockSends(t, d)
		const n = 6
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for _, sender := range []struct {
			name string
			send func(text string) error
		}{
			{"a", func(text string) error { _, err := a.sdk.Send(ctx, toBob, textMsg(t, text)); return err }},
			{"c", func(text string) error { _, err := c.st.Send(ctx, toBob, textMsg(t, text)); return err }},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					if err := sender.send(fmt.Sprintf("%s-%d", sender.name, i)); err != nil {
						errs <- fmt.Errorf("%s-%d: %w", sender.name, i, err)
					}
				}
			}()
		}
		// Held long enough for the refused sends to come back at least
		// once (the advice is a second and up to half of it more).
		for deadline := time.Now().Add(30 * time.Second); refusedSends(t, srv.URL) < refused0+2; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no send was refused while the commit was held")
			}
		}
		time.Sleep(1600 * time.Millisecond)
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		refused := refusedSends(t, srv.URL) - refused0
		if refused < 2 {
			t.Fatalf("%v sends refused, want the burst's", refused)
		}

		for _, who := range []struct {
			p    *phone
			name string
		}{{a, "a"}, {c, "c"}} {
			got := b.waitTexts(n+1, fromDevice(who.p.u.DeviceID))
			want := []string{who.name + "-warm"}
			for i := range n {
				want = append(want, fmt.Sprintf("%s-%d", who.name, i))
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("bob got %q from %s, want %q in this order", got, who.name, want)
			}
		}
		b.checkNoDuplicatesOrErrors()
		if got := rows(alice.DeviceID) - aRows; got != n {
			t.Errorf("alice's burst stored %d sends, want %d", got, n)
		}
		if got := rows(carol.DeviceID) - cRows; got != n {
			t.Errorf("carol's burst stored %d sends, want %d", got, n)
		}
		t.Logf("%v sends refused and sent again", refused)
	})
}

// lockSends holds the send path's tables locked in d, as a long commit
// would, until release: on SQLite the write lock, on PostgreSQL the
// idempotency table (sends' commits wait on it; acks do not write it).
func lockSends(t *testing.T, d *db.DB) (release func()) {
	t.Helper()
	held, done, stop := make(chan struct{}), make(chan error, 1), make(chan struct{})
	go func() {
		done <- d.Tx(context.Background(), func(tx *sql.Tx) error {
			if d.Dialect() == db.Postgres {
				if _, err := tx.Exec(`LOCK TABLE messaging_sends IN EXCLUSIVE MODE`); err != nil {
					return err
				}
			}
			close(held)
			<-stop
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			if err := <-done; err != nil {
				t.Errorf("lock: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// refusedSends sums kanal_sends_refused_total (in flight and in the group
// commit) from kanald's /metrics.
func refusedSends(t *testing.T, base string) float64 {
	t.Helper()
	series := metricSeries(t, base, "kanal_sends_refused_total")
	if len(series) != 2 {
		t.Fatalf("/metrics has %d kanal_sends_refused_total series, want in_flight and group_commit", len(series))
	}
	return series[0] + series[1]
}

// metricSeries returns the values of every series of the metric name in
// kanald's /metrics, labelled or not.
func metricSeries(t *testing.T, base, name string) []float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var out []float64
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			_, rest, _ = strings.Cut(rest, "}")
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}
