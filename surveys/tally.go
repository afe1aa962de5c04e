package surveys

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Result is a survey's count: what kanald signs after closing and what
// anyone recomputes from the public board and the published tally key.
// Invalid ballots are counted openly, each with its board number and why.
type Result struct {
	SurveyID    string           `json:"survey_id"`
	Title       string           `json:"title"`
	BoardLength int64            `json:"board_length"`
	BoardHead   string           `json:"board_head"` // hex
	Valid       int              `json:"valid"`
	Invalid     []InvalidBallot  `json:"invalid"`
	Questions   []QuestionResult `json:"questions"`
}

// InvalidBallot is a ballot on the board that did not count.
type InvalidBallot struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// QuestionResult counts one question over the valid ballots.
type QuestionResult struct {
	Prompt   string `json:"prompt"`
	Kind     string `json:"kind"`
	Answered int    `json:"answered"`
	Skipped  int    `json:"skipped"`
	// Options: single and multiple count choices; ranking counts first
	// preferences and Borda points (n-1 for a first place … 0 for a last);
	// scale counts each of 1..5.
	Options []OptionResult `json:"options,omitempty"`
	// Mean of a scale question, to two decimals.
	Mean float64 `json:"mean,omitempty"`
	// Texts of a text question, sorted, so their order says nothing about
	// the order of the ballots.
	Texts []string `json:"texts,omitempty"`
}

// OptionResult is one option's count. Percent is of the ballots that
// answered the question, to one decimal.
type OptionResult struct {
	Label   string  `json:"label"`
	Count   int     `json:"count"`
	Percent float64 `json:"percent"`
	Points  int     `json:"points,omitempty"`
}

// Tally decrypts every entry with the tally private key and counts. It
// trusts entries to be a checked board (CheckBoard); a ballot that does
// not decrypt or does not fit the definition is invalid, not an error.
func Tally(d *Definition, tallyPriv []byte, entries []Entry) (*Result, error) {
	if err := CheckTallyKey(d.TallyKey, tallyPriv); err != nil {
		return nil, err
	}
	kem, _, _ := suite()
	k, err := kem.NewPrivateKey(tallyPriv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTallyKey, err)
	}
	// Decryption dominates; spread it over the cores.
	type opened struct {
		answers []answer
		reason  string
	}
	out := make([]opened, len(entries))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(entries); i += workers {
				e := &entries[i]
				b, reason := openBallot(k, d.SurveyID, e.Nullifier, e.Ciphertext)
				if b == nil {
					out[i].reason = reason
					continue
				}
				if len(b.Answers) != len(d.Questions) {
					out[i].reason = fmt.Sprintf("%d answers for %d questions", len(b.Answers), len(d.Questions))
					continue
				}
				as := make([]answer, len(d.Questions))
				for j := range d.Questions {
					a, err := d.Questions[j].parseAnswer(b.Answers[j])
					if err != nil {
						out[i].reason = fmt.Sprintf("answer %d: %v", j+1, err)
						break
					}
					as[j] = a
				}
				if out[i].reason == "" {
					out[i].answers = as
				}
			}
		}()
	}
	wg.Wait()

	r := &Result{SurveyID: d.SurveyID, Title: d.Title, BoardLength: int64(len(entries)), Invalid: []InvalidBallot{}}
	head := Genesis(d.SurveyID)
	if len(entries) > 0 {
		head = entries[len(entries)-1].Hash
	}
	r.BoardHead = hex.EncodeToString(head)
	counts := make([]*counter, len(d.Questions))
	for j := range d.Questions {
		counts[j] = newCounter(&d.Questions[j])
	}
	for i, o := range out {
		if o.answers == nil {
			r.Invalid = append(r.Invalid, InvalidBallot{Seq: entries[i].Seq, Reason: o.reason})
			continue
		}
		r.Valid++
		for j, a := range o.answers {
			counts[j].add(a)
		}
	}
	for j := range d.Questions {
		r.Questions = append(r.Questions, counts[j].result())
	}
	return r, nil
}

type counter struct {
	q        *Question
	res      QuestionResult
	counts   []int
	points   []int
	scaleSum int
}

func newCounter(q *Question) *counter {
	c := &counter{q: q, res: QuestionResult{Prompt: q.Prompt, Kind: q.Kind}}
	switch q.Kind {
	case KindScale:
		c.counts = make([]int, ScaleMax+1)
	case KindText:
	default:
		c.counts = make([]int, len(q.Options))
		c.points = make([]int, len(q.Options))
	}
	return c
}

func (c *counter) add(a answer) {
	if a.skipped {
		c.res.Skipped++
		return
	}
	c.res.Answered++
	switch c.q.Kind {
	case KindSingle, KindMultiple:
		for _, n := range a.choices {
			c.counts[n]++
		}
	case KindScale:
		c.counts[a.choices[0]]++
		c.scaleSum += a.choices[0]
	case KindRanking:
		c.counts[a.choices[0]]++
		for place, n := range a.choices {
			c.points[n] += len(a.choices) - 1 - place
		}
	case KindText:
		c.res.Texts = append(c.res.Texts, a.text)
	}
}

func (c *counter) result() QuestionResult {
	r := c.res
	percent := func(n int) float64 {
		if r.Answered == 0 {
			return 0
		}
		return math.Round(1000*float64(n)/float64(r.Answered)) / 10
	}
	switch c.q.Kind {
	case KindScale:
		for v := 1; v <= ScaleMax; v++ {
			r.Options = append(r.Options, OptionResult{Label: strconv.Itoa(v), Count: c.counts[v], Percent: percent(c.counts[v])})
		}
		if r.Answered > 0 {
			r.Mean = math.Round(100*float64(c.scaleSum)/float64(r.Answered)) / 100
		}
	case KindText:
		slices.Sort(r.Texts)
	default:
		for i, label := range c.q.Options {
			o := OptionResult{Label: label, Count: c.counts[i], Percent: percent(c.counts[i])}
			if c.q.Kind == KindRanking {
				o.Points = c.points[i]
			}
			r.Options = append(r.Options, o)
		}
	}
	return r
}

// Statement is what kanald signs when it publishes a result: the count,
// the tally private key that lets anyone recount it, and how many took
// part.
type Statement struct {
	Result   Result `json:"result"`
	TallyKey []byte `json:"tally_key"`
	// TokensIssued is how many accounts received a token (anonymous) or
	// voted (named: there are no tokens, each voter counts as one).
	TokensIssued int `json:"tokens_issued"`
	// Participation is the share of issued tokens that became ballots,
	// in percent to one decimal.
	Participation float64   `json:"participation"`
	TalliedAt     time.Time `json:"tallied_at"`
}

// SignedResult is a Statement signed by the deployment notary.
type SignedResult struct {
	Statement json.RawMessage `json:"statement"`
	Signature []byte          `json:"signature"`
	Notary    []byte          `json:"notary_certificate"`
}

// Participation returns ballots as a percentage of tokens, to one decimal.
func Participation(ballots int64, tokens int) float64 {
	if tokens == 0 {
		return 0
	}
	return math.Round(1000*float64(ballots)/float64(tokens)) / 10
}
