// Package surveys is kanal's participation: council surveys whose answers
// only eligible accounts may give, each once, that nobody — the server
// included — can link to a person, and whose result anyone can recount.
//
// A council organiser's client makes the tally key (HPKE, X25519) and signs
// the definition with its device key, chained through its membership
// certificate to the deployment CA (Sign, Verify). For an anonymous survey
// the server makes a blind-signature key (RFC 9474 blind RSA) whose public
// half the definition names; an eligible account gets exactly one blind
// signature (IssueToken) and casts its ballot later, without a session,
// with the unblinded token (CastAnonymous). The server keeps a nullifier
// per token so a token counts once. Ballots are encrypted to the tally key
// and appended to a hash-chained public bulletin board whose head the
// deployment notary signs (board.go). After closing the organiser gives
// kanal the tally private key; kanal counts and signs the result, and
// publishes the key so that anyone recounts from the board alone (Tally,
// CheckBoard, VerifyResult). Named surveys use the same board and tally
// with the voter's account on each entry.
//
// Quick polls inside a chat are not here: they are end-to-end messages of
// the poll kind, counted by each client (TallyPoll helps).
//
// docs/surveys.md says what each party learns and what the scheme does not
// protect against.
package surveys
