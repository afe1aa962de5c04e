package surveys

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
)

// Results a council can use: a CSV for spreadsheets and an SVG bar chart
// for the council's report, both made from a Statement.

// WriteCSV writes one row per option (and per text answer) with counts and
// percentages, after rows for participation and invalid ballots.
func WriteCSV(w io.Writer, s *Statement) error {
	cw := csv.NewWriter(w)
	r := &s.Result
	rows := [][]string{
		{"survey", "question", "kind", "option", "count", "percent", "points"},
		{r.SurveyID, "", "ballots", "", strconv.FormatInt(r.BoardLength, 10), "", ""},
		{r.SurveyID, "", "valid", "", strconv.Itoa(r.Valid), "", ""},
		{r.SurveyID, "", "invalid", "", strconv.Itoa(len(r.Invalid)), "", ""},
		{r.SurveyID, "", "tokens issued", "", strconv.Itoa(s.TokensIssued), formatPercent(s.Participation), ""},
	}
	for i, q := range r.Questions {
		qn := strconv.Itoa(i + 1)
		for _, o := range q.Options {
			points := ""
			if q.Kind == KindRanking {
				points = strconv.Itoa(o.Points)
			}
			rows = append(rows, []string{r.SurveyID, qn, q.Kind, csvSafe(o.Label), strconv.Itoa(o.Count), formatPercent(o.Percent), points})
		}
		if q.Kind == KindScale {
			rows = append(rows, []string{r.SurveyID, qn, q.Kind, "mean", strconv.FormatFloat(q.Mean, 'f', 2, 64), "", ""})
		}
		for _, t := range q.Texts {
			rows = append(rows, []string{r.SurveyID, qn, q.Kind, csvSafe(t), "1", "", ""})
		}
		rows = append(rows, []string{r.SurveyID, qn, q.Kind, "(skipped)", strconv.Itoa(q.Skipped), "", ""})
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("surveys.csv: %w", err)
	}
	return nil
}

func formatPercent(p float64) string { return strconv.FormatFloat(p, 'f', 1, 64) }

// csvSafe keeps a spreadsheet from running a cell as a formula: free text
// comes from voters, and a leading =, +, - or @ would be one.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}

// Chart geometry, in SVG user units.
const (
	chartWidth = 720
	labelWidth = 260
	barMax     = 340
	rowHeight  = 26
	margin     = 16
)

// WriteSVG draws one horizontal bar chart per option question (single,
// multiple, ranking by first preferences, scale), with counts and
// percentages; free-text questions are listed by their number of answers.
// Every text from the definition is XML-escaped.
func WriteSVG(w io.Writer, s *Statement) error {
	r := &s.Result
	var body bytes.Buffer
	y := margin
	text := func(x, y int, size int, weight, anchor, s string) {
		fmt.Fprintf(&body, `<text x="%d" y="%d" font-size="%d" font-weight="%s" text-anchor="%s">`, x, y, size, weight, anchor)
		_ = xml.EscapeText(&body, []byte(s))
		body.WriteString("</text>\n")
	}
	y += 20
	text(margin, y, 20, "bold", "start", r.Title)
	y += 22
	text(margin, y, 13, "normal", "start", fmt.Sprintf("%d ballots, %d valid, %d invalid; participation %s%% of %d tokens",
		r.BoardLength, r.Valid, len(r.Invalid), formatPercent(s.Participation), s.TokensIssued))
	for i, q := range r.Questions {
		y += 34
		text(margin, y, 15, "bold", "start", fmt.Sprintf("%d. %s", i+1, truncateRunes(q.Prompt, 90)))
		if q.Kind == KindText {
			y += rowHeight
			text(margin, y, 13, "normal", "start", fmt.Sprintf("%d answers in text (see the CSV)", len(q.Texts)))
			continue
		}
		for _, o := range q.Options {
			y += rowHeight
			text(margin, y, 13, "normal", "start", truncateRunes(o.Label, 38))
			width := int(o.Percent / 100 * barMax)
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" fill="#2f6fb0"/>`+"\n", margin+labelWidth, y-14, width, rowHeight-8)
			text(margin+labelWidth+width+6, y, 13, "normal", "start", fmt.Sprintf("%d (%s%%)", o.Count, formatPercent(o.Percent)))
		}
	}
	y += margin + 10
	if _, err := fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">
<rect width="100%%" height="100%%" fill="white"/>
%s</svg>
`, chartWidth, y, chartWidth, y, body.Bytes()); err != nil {
		return fmt.Errorf("surveys.svg: %w", err)
	}
	return nil
}

func truncateRunes(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n-1]) + "…"
}
