package surveys

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

// TestBoardHeadsLogged: with the transparency log wired as kanald wires
// it, every board page carries head_log, the inclusion proof of a
// survey-head entry naming the page's survey, length and head hash; a
// head served again is not logged again, a grown board is; and a server
// that shows a second board of the same length to another voter has to
// log a second head of that length, which anyone reading the log sees.
func TestBoardHeadsLogged(t *testing.T) {
	dbtest.Run(t, append([]db.Migrations{translog.Migrations()}, sets...), func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		signer, vkey, err := translog.LoadOrCreateKey(filepath.Join(t.TempDir(), "log.key"), "kanal/surveys-test", rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		l, err := translog.New(ctx, translog.Options{DB: d, Signer: signer, Verifier: vkey})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, d)
		s, err := New(Options{DB: d, Notary: e.p.notary, Roots: e.p.ca.Pool(), Directory: e.dir, Now: e.clk.now, SealKey: e.seal, HeadLog: l,
			Auth: Auth{Require: func(ca.Level, http.Handler) http.Handler { return nil }, Caller: func(context.Context) (Caller, bool) { return Caller{}, false }}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		e.s = s

		def, _ := e.survey(t, ModeAnonymous, everyone)
		e.clk.set(def.OpensAt)
		for i := range 2 {
			if _, err := e.cast(def, e.token(t, def, voter(i)), intended(i)); err != nil {
				t.Fatal(err)
			}
		}
		check := func() (*Head, *transparency.Attachment) {
			t.Helper()
			p, err := s.Page(ctx, def.SurveyID, 0, MaxBoardPage)
			if err != nil {
				t.Fatal(err)
			}
			head, err := VerifyHead(&p.Head, e.p.ca.Pool())
			if err != nil {
				t.Fatal(err)
			}
			if p.HeadLog == nil {
				t.Fatal("board page without head_log")
			}
			cp, _, err := transparency.Open([]byte(p.HeadLog.Checkpoint), l.Verifier())
			if err != nil {
				t.Fatal(err)
			}
			proof, err := transparency.DecodeHashes(p.HeadLog.Proof)
			if err != nil {
				t.Fatal(err)
			}
			if err := transparency.VerifyInclusion(cp, p.HeadLog.Index, p.HeadLog.Entry, proof); err != nil {
				t.Fatal(err)
			}
			en, err := transparency.ParseEntry(p.HeadLog.Entry)
			if err != nil {
				t.Fatal(err)
			}
			if en.Kind != transparency.KindSurveyHead || en.Survey != def.SurveyID || en.Size != uint64(head.Length) || !bytes.Equal(en.Head, head.Hash) {
				t.Fatalf("head_log entry %+v does not name the head %+v", en, head)
			}
			return head, p.HeadLog
		}
		h2, a2 := check()
		if h2.Length != 2 {
			t.Fatalf("board length %d", h2.Length)
		}
		size, _ := l.Size(ctx)
		if _, again := check(); again.Index != a2.Index {
			t.Fatalf("the same head was logged again: %d, %d", a2.Index, again.Index)
		}
		if now, _ := l.Size(ctx); now != size {
			t.Fatalf("serving the same head grew the log from %d to %d", size, now)
		}
		if _, err := e.cast(def, e.token(t, def, voter(2)), intended(2)); err != nil {
			t.Fatal(err)
		}
		h3, a3 := check()
		if h3.Length != 3 || a3.Index <= a2.Index {
			t.Fatalf("grown board: length %d, entry %d after %d", h3.Length, a3.Index, a2.Index)
		}

		// A second board of length 3, for another voter, needs its own
		// head in the log: the log then shows two heads of one length.
		forked := bytes.Clone(h3.Hash)
		forked[0] ^= 1
		if _, err := l.LogHead(ctx, def.SurveyID, 3, forked); err != nil {
			t.Fatal(err)
		}
		es, err := l.Entries(ctx, 0, translog.MaxEntriesPerRequest)
		if err != nil {
			t.Fatal(err)
		}
		heads := map[uint64][][]byte{}
		for _, le := range es {
			en, err := transparency.ParseEntry(le.Data)
			if err != nil {
				t.Fatal(err)
			}
			if en.Kind == transparency.KindSurveyHead && en.Survey == def.SurveyID {
				heads[en.Size] = append(heads[en.Size], en.Head)
			}
		}
		if len(heads[2]) != 1 || len(heads[3]) != 2 || bytes.Equal(heads[3][0], heads[3][1]) {
			t.Fatalf("heads in the log: %x", heads)
		}
	})
}
