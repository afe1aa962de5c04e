package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Every value lands in a bucket whose bounds hold it, and the bucket's
// width is at most 1/2^subBits of the value.
func TestBucketBounds(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 4095, 4096, 123456, 1 << 30, 1<<maxBits - 1} {
		i := bucketOf(v)
		hi := upperOf(i)
		lo := int64(0)
		if i > 0 {
			lo = upperOf(i-1) + 1
		}
		if v < lo || v > hi {
			t.Fatalf("%d in bucket %d [%d, %d]", v, i, lo, hi)
		}
		if v >= 1<<subBits && float64(hi-lo+1) > float64(v)/float64(1<<subBits) {
			t.Fatalf("bucket of %d is %d wide", v, hi-lo+1)
		}
	}
	if bucketOf(1<<maxBits-1) != buckets-1 {
		t.Fatalf("last bucket %d of %d", bucketOf(1<<maxBits-1), buckets)
	}
}

// Quantiles agree with the exact ones of the recorded samples within the
// bucket precision.
func TestQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var exact []int64
	for range 100000 {
		// A long tail: mostly a few ms, some up to seconds.
		us := int64(r.ExpFloat64()*3000) + 200
		if r.IntN(1000) == 0 {
			us *= 300
		}
		h.Record(time.Duration(us) * time.Microsecond)
		exact = append(exact, us)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := exact[int(q*float64(len(exact)))-1]
		got := h.Quantile(q).Microseconds()
		if got < want || float64(got-want) > float64(want)/float64(1<<subBits)+1 {
			t.Errorf("q%v: got %dµs, exact %dµs", q, got, want)
		}
	}
	if h.Max().Microseconds() != exact[len(exact)-1] || h.Count() != 100000 {
		t.Fatalf("max %v count %d", h.Max(), h.Count())
	}

	var a, b Histogram
	for i, v := range exact {
		if i%2 == 0 {
			a.Record(time.Duration(v) * time.Microsecond)
		} else {
			b.Record(time.Duration(v) * time.Microsecond)
		}
	}
	a.Merge(&b)
	if a.Quantile(0.99) != h.Quantile(0.99) || a.Count() != h.Count() {
		t.Fatalf("merged p99 %v, want %v", a.Quantile(0.99), h.Quantile(0.99))
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 {
		t.Fatal("empty histogram reports values")
	}
}

// A Split puts each part of a delivery's time in its own histogram;
// nothing recorded, no figures.
func TestSplit(t *testing.T) {
	var s Split
	if s.Stats() != nil {
		t.Fatal("an empty split reports figures")
	}
	t0 := time.Unix(1000, 0)
	for i := range 100 {
		// 2 ms to the server time, 10 ms to the read, 1 ms to decrypt,
		// and one delivery of 40 + 60 + 5 ms.
		to, read, open := 2*time.Millisecond, 10*time.Millisecond, time.Millisecond
		if i == 99 {
			to, read, open = 40*time.Millisecond, 60*time.Millisecond, 5*time.Millisecond
		}
		intended := t0.Add(time.Duration(i) * time.Second)
		s.Record(intended, intended.Add(to), intended.Add(to+read), intended.Add(to+read+open))
	}
	st := s.Stats()
	// Quantiles are their buckets' upper bounds (within 1/128); maxima
	// are exact.
	near := func(got, want float64) bool { return got >= want && got <= want*(1+1.0/(1<<subBits)) }
	if st == nil || !near(st.ToStore.P50, 2) || !near(st.ToRead.P50, 10) || !near(st.ToDecrypted.P50, 1) ||
		st.ToStore.Max != 40 || st.ToRead.Max != 60 || st.ToDecrypted.Max != 5 {
		t.Fatalf("split: %+v", st)
	}
	// A closed loop has no schedule to be late for: no sender lag.
	if st.SenderLate != nil {
		t.Fatalf("sender lag without a Late: %+v", st.SenderLate)
	}
	// Senders 0.5 ms late, one of them 30 ms.
	for i := range 100 {
		d := 500 * time.Microsecond
		if i == 99 {
			d = 30 * time.Millisecond
		}
		s.Late(d)
	}
	if l := s.Stats().SenderLate; l == nil || !near(l.P50, 0.5) || l.Max != 30 {
		t.Fatalf("sender lag: %+v", l)
	}
}
