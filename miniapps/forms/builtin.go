package forms

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// The municipal templates kanal ships, written from the municipalities'
// public descriptions of the procedures (templates/*.json). An office
// publishes one as its own after setting org to itself.
//
//go:embed templates/*.json
var builtin embed.FS

// Builtin returns the shipped template called name ("hundeanmeldung",
// "bewohnerparkausweis", "sperrmuell"), decoded and checked.
func Builtin(name string) (*Template, []byte, error) {
	b, err := builtin.ReadFile("templates/" + name + ".json")
	if err != nil {
		return nil, nil, fmt.Errorf("%w: no shipped template %q", ErrNotFound, name)
	}
	t, err := Decode(b)
	return t, b, err
}

// BuiltinNames lists the shipped templates.
func BuiltinNames() []string {
	entries, _ := fs.ReadDir(builtin, "templates")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(out)
	return out
}
