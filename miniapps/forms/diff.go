package forms

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Change is one difference between two templates: at Path (a JSON
// pointer into the template), From is the old value's canonical JSON and
// To the new one's; "" means absent.
type Change struct {
	Path     string `json:"path"`
	From, To string
}

func (c Change) String() string {
	switch {
	case c.From == "":
		return fmt.Sprintf("+ %s: %s", c.Path, c.To)
	case c.To == "":
		return fmt.Sprintf("- %s: %s", c.Path, c.From)
	}
	return fmt.Sprintf("~ %s: %s → %s", c.Path, c.From, c.To)
}

// Diff lists what changed from a to b, member by member, in a stable
// order: objects are compared by member name, arrays element by element
// (layout fields by their name, so a moved field shows as moved, not as
// every later field changed).
func Diff(a, b *Template) []Change {
	va, _ := decodeValue(a.JSON(), MaxSchemaDepth+8)
	vb, _ := decodeValue(b.JSON(), MaxSchemaDepth+8)
	var out []Change
	diffValue("", va, vb, &out)
	return out
}

func canonicalString(v any) string {
	var b bytes.Buffer
	_ = writeCanonical(&b, v)
	return b.String()
}

func diffValue(path string, a, b any, out *[]Change) {
	oa, okA := a.([]member)
	ob, okB := b.([]member)
	if okA && okB {
		get := func(ms []member, name string) (any, bool) {
			for _, m := range ms {
				if m.name == name {
					return m.value, true
				}
			}
			return nil, false
		}
		var names []string
		for _, m := range oa {
			names = append(names, m.name)
		}
		for _, m := range ob {
			if !slices.Contains(names, m.name) {
				names = append(names, m.name)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			x, inA := get(oa, n)
			y, inB := get(ob, n)
			p := path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(n)
			switch {
			case !inA:
				*out = append(*out, Change{Path: p, To: canonicalString(y)})
			case !inB:
				*out = append(*out, Change{Path: p, From: canonicalString(x)})
			default:
				diffValue(p, x, y, out)
			}
		}
		return
	}
	aa, okA := a.([]any)
	ab, okB := b.([]any)
	if okA && okB {
		for i := 0; i < max(len(aa), len(ab)); i++ {
			p := fmt.Sprintf("%s/%d", path, i)
			switch {
			case i >= len(aa):
				*out = append(*out, Change{Path: p, To: canonicalString(ab[i])})
			case i >= len(ab):
				*out = append(*out, Change{Path: p, From: canonicalString(aa[i])})
			default:
				diffValue(p, aa[i], ab[i], out)
			}
		}
		return
	}
	if x, y := canonicalString(a), canonicalString(b); x != y {
		*out = append(*out, Change{Path: path, From: x, To: y})
	}
}

// MarshalJSON writes a change with from and to as JSON values.
func (c Change) MarshalJSON() ([]byte, error) {
	m := map[string]any{"path": c.Path}
	if c.From != "" {
		m["from"] = json.RawMessage(c.From)
	}
	if c.To != "" {
		m["to"] = json.RawMessage(c.To)
	}
	return json.Marshal(m)
}
