package surveys

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudflare/circl/blindsign/blindrsa"

	"github.com/kanal-server/kanal/internal/benchcpu"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// BenchmarkTokenIssuance measures blind token issuance on the embedded
// default (SQLite): eligibility check, the issuance row and counter in the
// surveys' group commit, and the RSA-2048 blind signature. Requests come
// from two accounts at once (RunParallel's default on two cores).
func BenchmarkTokenIssuance(b *testing.B) {
	benchIssuance(b, dbtest.SQLite(b, sets...), 1)
}

// BenchmarkTokenIssuanceCitizens is issuance as a server sees it: many
// citizens asking at once (32 requests in flight on two cores), so that
// while some sign others wait for their commit, and commits are shared.
// On SQLite and on PostgreSQL (whose own CPU, another process, is not in
// cpu-ns/op).
func BenchmarkTokenIssuanceCitizens(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchIssuance(b, dbtest.SQLite(b, sets...), 16) })
	b.Run("postgres", func(b *testing.B) { benchIssuance(b, dbtest.Postgres(b, sets...), 16) })
}

// benchIssuance issues b.N tokens of one survey to b.N accounts, with
// parallelism×GOMAXPROCS requests in flight. The blinded requests are
// made before the timer starts (the client's work).
func benchIssuance(b *testing.B, d *db.DB, parallelism int) {
	e := newEnv(b, d)
	def, _ := e.survey(b, ModeAnonymous, everyone)
	e.clk.set(def.OpensAt)
	reqs := make([]*TokenRequest, 256)
	for i := range reqs {
		r, err := NewTokenRequest(def)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = r
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	done := benchcpu.Start(b)
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := e.s.IssueToken(context.Background(), voter(int(i)), def.SurveyID, reqs[i%int64(len(reqs))].Blinded); err != nil {
				b.Error(err)
				return
			}
		}
	})
	done()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.StopTimer()
	if got := e.count(b, `SELECT tokens_issued FROM surveys WHERE id = $1`, def.SurveyID); got != int(n.Load()) {
		b.Fatalf("%d tokens counted, %d issued", got, n.Load())
	}
}

// BenchmarkBallotsAccepted measures anonymous ballots accepted on SQLite
// and on PostgreSQL (whose own CPU, another process, is not in
// cpu-ns/op): token check (RSA-PSS verify), nullifier check and the
// board append, with concurrent voters sharing commits. Tokens and
// ciphertexts are made before the timer starts.
func BenchmarkBallotsAccepted(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchBallots(b, dbtest.SQLite(b, sets...)) })
	b.Run("postgres", func(b *testing.B) { benchBallots(b, dbtest.Postgres(b, sets...)) })
}

func benchBallots(b *testing.B, d *db.DB) {
	e := newEnv(b, d)
	def, _ := e.survey(b, ModeAnonymous, everyone)
	e.clk.set(def.OpensAt)
	type ballot struct {
		tok *Token
		ct  []byte
	}
	ballots := make([]ballot, b.N)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 4 {
				tok := e.token(b, def, voter(i))
				ct, err := EncryptBallot(def, Nullifier(tok.Message), intended(i))
				if err != nil {
					b.Error(err)
					return
				}
				ballots[i] = ballot{tok, ct}
			}
		}()
	}
	wg.Wait()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	done := benchcpu.Start(b)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			x := ballots[n.Add(1)-1]
			if _, err := e.s.CastAnonymous(context.Background(), def.SurveyID, x.tok, x.ct); err != nil {
				b.Error(err)
				return
			}
		}
	})
	done()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ballots/s")
	b.StopTimer()
	if got := e.count(b, `SELECT board_len FROM surveys WHERE id = $1`, def.SurveyID); got != b.N {
		b.Fatalf("%d ballots on the board, %d cast", got, b.N)
	}
}

type tallyFixture struct {
	def     *Definition
	tk      *TallyKeyPair
	entries []Entry
}

var tallyBoard = sync.OnceValues(func() (*tallyFixture, error) {
	tk, err := NewTallyKey()
	if err != nil {
		return nil, err
	}
	def := &Definition{SurveyID: "srv_bench", Questions: questions(), TallyKey: tk.Public}
	entries := make([]Entry, 100_000)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(entries); i += 4 {
				null := Nullifier([]byte(fmt.Sprint(i)))
				ct, err := EncryptBallot(def, null, intended(i))
				if err != nil {
					errs <- err
					return
				}
				entries[i] = Entry{Seq: int64(i + 1), Nullifier: null, Ciphertext: ct, Hash: make([]byte, 32)}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return &tallyFixture{def, tk, entries}, <-errs
})

// BenchmarkTally100k measures counting 100,000 ballots: HPKE decryption,
// decoding and checking each, and the count (the board check, one RSA-PSS
// verification per entry, comes on top for a recount).
func BenchmarkTally100k(b *testing.B) {
	f, err := tallyBoard()
	if err != nil {
		b.Fatal(err)
	}
	def, tk, entries := f.def, f.tk, f.entries
	b.ResetTimer()
	for range b.N {
		r, err := Tally(def, tk.Private, entries)
		if err != nil || r.Valid != len(entries) {
			b.Fatalf("%v, %d valid", err, r.Valid)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/100k-ballots")
}

// BenchmarkBlindSign measures one blind signature with a survey's
// RSA-2048 token key: "circl" is circl's BlindSign (one exponentiation
// modulo n with math/big, after blinding the base), "crt" is TokenSigner
// (two constant-time exponentiations modulo the primes, then the check).
func BenchmarkBlindSign(b *testing.B) {
	k, err := GenerateTokenKey()
	if err != nil {
		b.Fatal(err)
	}
	blinded := make([]byte, k.Size())
	if _, err := rand.Read(blinded); err != nil {
		b.Fatal(err)
	}
	blinded[0] &= 0x7f
	b.Run("circl", func(b *testing.B) {
		s := blindrsa.NewSigner(k)
		b.ReportAllocs()
		done := benchcpu.Start(b)
		for b.Loop() {
			if _, err := s.BlindSign(blinded); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
	b.Run("crt", func(b *testing.B) {
		s, err := NewTokenSigner(k)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		done := benchcpu.Start(b)
		for b.Loop() {
			if _, err := s.BlindSign(blinded); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
}

// BenchmarkTokenVerify compares the check of a token's signature that a
// ballot and a recount make once per token: circl's RFC 9474 Verifier
// (math/big) and crypto/rsa's RSASSA-PSS (verifyTokenSignature), on a
// real token.
func BenchmarkTokenVerify(b *testing.B) {
	k, err := GenerateTokenKey()
	if err != nil {
		b.Fatal(err)
	}
	der, err := MarshalTokenPublic(k)
	if err != nil {
		b.Fatal(err)
	}
	req, err := NewTokenRequest(&Definition{SurveyID: "srv_bench", TokenKey: der})
	if err != nil {
		b.Fatal(err)
	}
	sig, err := BlindSign(k, req.Blinded)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := req.Finalize(sig)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("circl", func(b *testing.B) {
		v, err := blindrsa.NewVerifier(tokenVariant, &k.PublicKey)
		if err != nil {
			b.Fatal(err)
		}
		done := benchcpu.Start(b)
		for b.Loop() {
			if err := v.Verify(tok.Message, tok.Signature); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
	b.Run("crypto-rsa", func(b *testing.B) {
		done := benchcpu.Start(b)
		for b.Loop() {
			if err := verifyTokenSignature(&k.PublicKey, tok.Message, tok.Signature); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
}
