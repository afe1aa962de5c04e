package forms

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a semantic version MAJOR.MINOR.PATCH (semver.org 2.0.0
// without pre-release or build parts: a published template is a release).
type Version struct{ Major, Minor, Patch uint32 }

// ParseVersion parses "1.2.3": three decimal numbers without leading zeros.
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(s, ".")
	if len(s) > MaxVersion || len(parts) != 3 {
		return Version{}, fmt.Errorf("%w: version %q is not MAJOR.MINOR.PATCH", ErrInvalid, s)
	}
	var n [3]uint32
	for i, p := range parts {
		if p == "" || len(p) > 1 && p[0] == '0' || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("%w: version %q is not MAJOR.MINOR.PATCH", ErrInvalid, s)
		}
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("%w: version %q: %v", ErrInvalid, s, err)
		}
		n[i] = uint32(v)
	}
	return Version{n[0], n[1], n[2]}, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Compare returns -1, 0 or +1 as v is before, equal to or after w.
func (v Version) Compare(w Version) int {
	for _, d := range [3][2]uint32{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		switch {
		case d[0] < d[1]:
			return -1
		case d[0] > d[1]:
			return 1
		}
	}
	return 0
}
