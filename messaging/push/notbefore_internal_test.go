package push

import (
	"testing"
	"time"
)

// TestNotBeforeRoundsUp: a due time stored to the millisecond is never
// before the time it stands for (a retry 999.65 ms after a 429 with
// Retry-After: 1 was seen before due times were rounded up).
func TestNotBeforeRoundsUp(t *testing.T) {
	ms := time.UnixMilli(1_764_900_000_123)
	for _, c := range []struct {
		t    time.Time
		want int64
	}{
		{ms, 1_764_900_000_123},
		{ms.Add(time.Nanosecond), 1_764_900_000_124},
		{ms.Add(650 * time.Microsecond), 1_764_900_000_124},
		{ms.Add(time.Millisecond - time.Nanosecond), 1_764_900_000_124},
	} {
		got := notBefore(c.t)
		if got != c.want || time.UnixMilli(got).Before(c.t) {
			t.Errorf("notBefore(%s) = %d, want %d", c.t.Format(time.RFC3339Nano), got, c.want)
		}
	}
}
