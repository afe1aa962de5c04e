package surveys_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/surveys"
)

// docBlock returns the JSON block that follows marker in docs/surveys.md.
func docBlock(t *testing.T, marker string) []byte {
	t.Helper()
	b, err := os.ReadFile("../docs/surveys.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+marker+":")
	if !ok {
		t.Fatalf("docs/surveys.md has no %s block", marker)
	}
	_, rest, _ = strings.Cut(rest, "```json\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("%s block is not closed", marker)
	}
	return []byte(block)
}

// exampleDraft decodes the documented survey file as `kanal survey
// create` does (unknown members refused) and completes it as the CLI does.
func exampleDraft(t *testing.T, file []byte) (*surveys.Definition, error) {
	t.Helper()
	var d surveys.Definition
	dec := json.NewDecoder(bytes.NewReader(file))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	d.Version, d.OrgID, d.Mode = 1, "org_0123456789abcdef", surveys.ModeAnonymous
	return &d, d.ValidateDraft()
}

// TestSurveyQuestionExampleIsValid keeps docs/surveys.md's survey file
// true: it decodes strictly, passes the checks kanal runs before a
// survey is created, shows every question kind with min/max where they
// apply, and its example ballot is a valid answer to it. The bounds it
// describes are the ones enforced: min or max where the page says there
// are none is refused, and so are answers outside them.
func TestSurveyQuestionExampleIsValid(t *testing.T) {
	file := docBlock(t, "survey-example")
	d, err := exampleDraft(t, file)
	if err != nil {
		t.Fatalf("the documented survey file is refused: %v", err)
	}
	kinds := map[string]bool{}
	for _, q := range d.Questions {
		kinds[q.Kind] = true
	}
	for _, k := range []string{surveys.KindSingle, surveys.KindMultiple, surveys.KindRanking, surveys.KindScale, surveys.KindText} {
		if !kinds[k] {
			t.Errorf("the example lacks a %s question", k)
		}
	}
	if d.ClosesAt.Sub(d.OpensAt) <= 0 || d.OpensAt.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("example dates %v – %v", d.OpensAt, d.ClosesAt)
	}

	var ballot struct {
		Answers []any `json:"answers"`
	}
	if err := json.Unmarshal(docBlock(t, "survey-answers"), &ballot); err != nil {
		t.Fatal(err)
	}
	if err := surveys.CheckAnswers(d, ballot.Answers); err != nil {
		t.Fatalf("the documented ballot is refused: %v", err)
	}

	// What the page says is refused, is.
	var generic map[string]any
	json.Unmarshal(file, &generic)
	questions := generic["questions"].([]any)
	refused := map[string]func(qs []map[string]any){
		"min on single":          func(qs []map[string]any) { qs[0]["min"] = 1 },
		"max on ranking":         func(qs []map[string]any) { qs[2]["max"] = 2 },
		"min on scale":           func(qs []map[string]any) { qs[3]["min"] = 1 },
		"min on text":            func(qs []map[string]any) { qs[4]["min"] = 1 },
		"multiple min over max":  func(qs []map[string]any) { qs[1]["min"] = 3 },
		"multiple max over opts": func(qs []map[string]any) { qs[1]["max"] = 5 },
		"text max over 2000":     func(qs []map[string]any) { qs[4]["max"] = 2001 },
		"unknown member":         func(qs []map[string]any) { qs[0]["weight"] = 2 },
		"one option":             func(qs []map[string]any) { qs[0]["options"] = []string{"Ja"} },
	}
	for name, change := range refused {
		qs := make([]map[string]any, len(questions))
		for i, q := range questions {
			qs[i] = map[string]any{}
			for k, v := range q.(map[string]any) {
				qs[i][k] = v
			}
		}
		change(qs)
		g := map[string]any{}
		for k, v := range generic {
			g[k] = v
		}
		g["questions"] = qs
		b, _ := json.Marshal(g)
		if _, err := exampleDraft(t, b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, answers := range map[string][]any{
		"three of at most two": {0, []any{0, 1, 2}, []any{2, 0, 1}, 4, nil},
		"none of at least one": {0, []any{}, []any{2, 0, 1}, 4, nil},
		"scale 6":              {0, []any{0}, []any{2, 0, 1}, 6, nil},
		"ranking incomplete":   {0, []any{0}, []any{2, 0}, 4, nil},
		"single out of range":  {3, []any{0}, []any{2, 0, 1}, 4, nil},
		"text over max":        {0, []any{0}, []any{2, 0, 1}, 4, strings.Repeat("x", 501)},
		"required left out":    {nil, []any{0}, []any{2, 0, 1}, 4, nil},
	} {
		if err := surveys.CheckAnswers(d, answers); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
