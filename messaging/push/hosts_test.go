package push

import (
	"testing"
	"time"
)

// TestHostSlots: a host holds at most its limit of workers; after a
// timeout it holds one until the cooldown has passed; other hosts are not
// affected.
func TestHostSlots(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	h := newHostSlots(2, time.Minute)
	d1, ok1 := h.acquire("a", t0)
	d2, ok2 := h.acquire("a", t0)
	if !ok1 || !ok2 {
		t.Fatal("a host did not get its two workers")
	}
	if _, ok := h.acquire("a", t0); ok {
		t.Fatal("a host got a third worker over its limit of 2")
	}
	if _, ok := h.acquire("b", t0); !ok {
		t.Fatal("another host was refused while the first was full")
	}
	d1(true, t0) // timed out
	d2(false, t0)
	d3, ok := h.acquire("a", t0.Add(time.Second))
	if !ok {
		t.Fatal("a slow host got no worker at all")
	}
	if _, ok := h.acquire("a", t0.Add(time.Second)); ok {
		t.Fatal("a host that timed out got a second worker during its cooldown")
	}
	d3(false, t0.Add(2*time.Second))
	a, ok := h.acquire("a", t0.Add(2*time.Minute))
	b, ok2 := h.acquire("a", t0.Add(2*time.Minute))
	if !ok || !ok2 {
		t.Fatal("a host did not get its share back after the cooldown")
	}
	a(false, t0)
	b(false, t0)
}
