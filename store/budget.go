package store

// Budget bounds the bytes one read returns, counted as stored (the plan
// version's encoding, and the log entry for an event). The first item always
// fits, so a read makes progress however large one item is; after it, an
// item fits only while the total stays within Max. Max <= 0 is no bound.
// Every backend applies this same rule; the conformance suite checks it.
type Budget struct {
	Max     int
	used, n int
}

// Fits reports whether an item of size bytes may still be returned, and
// counts it if so.
func (b *Budget) Fits(size int) bool {
	if b.Max > 0 && b.n > 0 && b.used+size > b.Max {
		return false
	}
	b.used += size
	b.n++
	return true
}
