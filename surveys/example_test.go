package surveys_test

import (
	"fmt"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/surveys"
)

// Example runs the cryptography of one anonymous ballot without a server:
// the organiser's tally key, the survey's token key, a blind token, an
// encrypted ballot on a one-entry board, and the count after closing.
func Example() {
	tokenKey, _ := surveys.GenerateTokenKey() // kanald makes it per survey
	tokenPub, _ := surveys.MarshalTokenPublic(tokenKey)
	tally, _ := surveys.NewTallyKey() // the organiser's client makes it
	now := time.Now()
	def := &surveys.Definition{Version: 1, SurveyID: "srv_example", OrgID: "org_rat", Title: "Marktplatz",
		Questions: []surveys.Question{{Kind: surveys.KindSingle, Prompt: "Autofrei?", Options: []string{"Ja", "Nein"}}},
		Audience:  surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow},
		OpensAt:   now, ClosesAt: now.Add(time.Hour), Mode: surveys.ModeAnonymous, Results: surveys.ResultsPublic,
		TokenKey: tokenPub, TallyKey: tally.Public, SignedAt: now}

	// The voter's client blinds a token request; the server signs it blind.
	req, _ := surveys.NewTokenRequest(def)
	blindSig, _ := surveys.BlindSign(tokenKey, req.Blinded)
	token, _ := req.Finalize(blindSig)

	// The ballot, encrypted to the tally key, goes on the board.
	nullifier := surveys.Nullifier(token.Message)
	ct, _ := surveys.EncryptBallot(def, nullifier, []any{0})
	entry := surveys.Entry{Seq: 1, Prev: surveys.Genesis(def.SurveyID), Nullifier: nullifier,
		TokenMessage: token.Message, TokenSignature: token.Signature, Ciphertext: ct}
	entry.Hash = entry.ComputeHash(def.SurveyID)
	board := []surveys.Entry{entry}
	fmt.Println("board checks:", surveys.CheckBoard(def, board, &surveys.Head{SurveyID: def.SurveyID, Length: 1, Hash: entry.Hash}))

	// After closing, the published tally key counts it.
	r, _ := surveys.Tally(def, tally.Private, board)
	fmt.Printf("%s: %d, %s: %d\n", r.Questions[0].Options[0].Label, r.Questions[0].Options[0].Count,
		r.Questions[0].Options[1].Label, r.Questions[0].Options[1].Count)
	// Output:
	// board checks: <nil>
	// Ja: 1, Nein: 0
}
