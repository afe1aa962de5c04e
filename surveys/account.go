package surveys

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// An account's own data (GDPR Art. 15 and 17; docs/privacy.md). Surveys
// knows whether an account received an eligibility token for a survey
// (never which token, nor its ballot), which named ballots it cast (named
// surveys name their voters on purpose), and which surveys it created.

// AccountSurveys is the account's part in surveys.
type AccountSurveys struct {
	Tokens  []TokenFlag     `json:"eligibility_tokens"`
	Named   []NamedBallot   `json:"named_ballots"`
	Created []CreatedSurvey `json:"surveys_created"`
}

// TokenFlag says that the account received the eligibility token of a
// survey. The server cannot tell which ballot, if any, it cast with it.
type TokenFlag struct {
	SurveyID string `json:"survey_id"`
	OrgID    string `json:"org_id"`
	Mode     string `json:"mode"`
	Issued   bool   `json:"token_issued"`
}

// NamedBallot is a ballot of a named survey, on the public board under
// the account's id.
type NamedBallot struct {
	SurveyID string `json:"survey_id"`
	Seq      int64  `json:"board_seq"`
}

// CreatedSurvey is a survey the account created for its organisation.
type CreatedSurvey struct {
	SurveyID  string    `json:"survey_id"`
	OrgID     string    `json:"org_id"`
	CreatedAt time.Time `json:"created_at"`
}

// ExportAccount returns account's participation.
func (s *Service) ExportAccount(ctx context.Context, account string) (*AccountSurveys, error) {
	out := &AccountSurveys{Tokens: []TokenFlag{}, Named: []NamedBallot{}, Created: []CreatedSurvey{}}
	each := func(q string, f func(*sql.Rows) error) error {
		rows, err := s.db.Query(ctx, q, account)
		if err != nil {
			return fmt.Errorf("surveys.export: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := f(rows); err != nil {
				return fmt.Errorf("surveys.export: %w", err)
			}
		}
		return rows.Err()
	}
	err := each(`SELECT t.survey_id, s.org_id, s.mode FROM survey_tokens t JOIN surveys s ON s.id = t.survey_id
		WHERE t.account_id = $1 ORDER BY t.survey_id`, func(r *sql.Rows) error {
		f := TokenFlag{Issued: true}
		if err := r.Scan(&f.SurveyID, &f.OrgID, &f.Mode); err != nil {
			return err
		}
		out.Tokens = append(out.Tokens, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = each(`SELECT survey_id, seq FROM survey_named_voters WHERE account_id = $1 ORDER BY survey_id, seq`, func(r *sql.Rows) error {
		var b NamedBallot
		if err := r.Scan(&b.SurveyID, &b.Seq); err != nil {
			return err
		}
		out.Named = append(out.Named, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = each(`SELECT id, org_id, created_at FROM surveys WHERE created_by = $1 ORDER BY created_at, id`, func(r *sql.Rows) error {
		var c CreatedSurvey
		var at int64
		if err := r.Scan(&c.SurveyID, &c.OrgID, &at); err != nil {
			return err
		}
		c.CreatedAt = time.Unix(at, 0).UTC()
		out.Created = append(out.Created, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PseudonymiseAccountTx replaces account by pseudonym, inside tx, where
// surveys records that it received a token (so the count of tokens issued
// stays checkable, and nothing links it to a person) and that it created
// a survey. Named ballots stay under the account's id: a named survey's
// public board hashes each voter's id into its chain, and the published
// result must stay recountable (docs/privacy.md).
func (s *Service) PseudonymiseAccountTx(ctx context.Context, tx *sql.Tx, account, pseudonym string) error {
	for _, q := range []string{
		`UPDATE survey_tokens SET account_id = $2 WHERE account_id = $1`,
		`UPDATE surveys SET created_by = $2 WHERE created_by = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, account, pseudonym); err != nil {
			return fmt.Errorf("surveys.erase: %w", err)
		}
	}
	return nil
}
