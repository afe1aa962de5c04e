package keys

import (
	"fmt"
	"io"
)

// Session state serialization for the client's store. Layout (version 1):
//
//	version || kind || vec16(AD) || RK(32) || DHs private(32) ||
//	hasDHr(1) [DHr(32)] || hasCKs(1) [CKs(32)] || hasCKr(1) [CKr(32)] ||
//	Ns(4) || Nr(4) || PN(4) || step(4) || seq(8) ||
//	nPrev(2) || nPrev × remote key(32) ||
//	nSkipped(4) || nSkipped × (DH(32) || N(4) || MK(32) || step(4) || seq(8))
//
// Skipped keys are written oldest first with strictly increasing seq, so the
// encoding is canonical. A receiving chain (hasCKr) without a remote ratchet
// key (hasDHr) is refused. The output is secret: it holds the chain keys.

// MarshalBinary serializes the session state.
func (s *Session) MarshalBinary() ([]byte, error) {
	if s.dhs == nil {
		return nil, fmt.Errorf("keys.Session: %w", ErrInvalidKey)
	}
	// Sized once: the state is rewritten after every message.
	n := 2 + 2 + len(s.ad) + 32 + 32 + 3*33 + 4*4 + 8 + 2 + 32*len(s.prevRemote) + 4 + 80*len(s.skipped)
	b := append(make([]byte, 0, n), encodingVersion, byte(kindSession))
	b = appendVec16(b, s.ad)
	b = append(b, s.rk[:]...)
	b = append(b, s.dhs[:]...)
	b = appendOpt32(b, s.hasDHr, s.dhr)
	b = appendOpt32(b, s.hasCKs, s.cks)
	b = appendOpt32(b, s.hasCKr, s.ckr)
	for _, v := range []uint32{s.ns, s.nr, s.pn, s.step} {
		b = be32(b, v)
	}
	b = be64(b, s.seq)
	b = append(b, byte(len(s.prevRemote)>>8), byte(len(s.prevRemote)))
	for _, k := range s.prevRemote {
		b = append(b, k[:]...)
	}
	b = be32(b, uint32(len(s.skipped)))
	for _, k := range s.sortedSkipped() {
		e := s.skipped[k]
		b = append(b, k.dh[:]...)
		b = be32(b, k.n)
		b = append(b, e.mk[:]...)
		b = be32(b, e.step)
		b = be64(b, e.seq)
	}
	return b, nil
}

// UnmarshalSession restores a session written by MarshalBinary. rand
// (crypto/rand when nil) supplies future ratchet keys.
func UnmarshalSession(rand io.Reader, data []byte) (*Session, error) {
	s := new(Session)
	if err := s.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	s.rand = rand
	return s, nil
}

// UnmarshalBinary restores a session written by MarshalBinary; ratchet keys
// then come from crypto/rand. The decoder checks every count against the
// limits before allocating, and never panics on hostile input.
func (s *Session) UnmarshalBinary(data []byte) error {
	if len(data) > MaxSessionLen {
		return fmt.Errorf("keys.Session: %w", ErrTooLarge)
	}
	d := newDecoder("Session", data, kindSession)
	n := &Session{skipped: map[skippedKey]skippedEntry{}}
	n.ad = append([]byte(nil), d.vec16(MaxAssociatedDataLen)...)
	n.rk = d.array32()
	dhs := d.bytes(32)
	n.hasDHr, n.dhr = d.opt32()
	n.hasCKs, n.cks = d.opt32()
	n.hasCKr, n.ckr = d.opt32()
	n.ns, n.nr, n.pn, n.step = d.u32(), d.u32(), d.u32(), d.u32()
	n.seq = d.u64()
	nPrev := int(d.u16())
	if nPrev > MaxSkippedSteps {
		d.fail("too many previous ratchet keys")
	}
	for i := 0; i < nPrev && d.err == nil; i++ {
		n.prevRemote = append(n.prevRemote, d.array32())
	}
	nSkipped := d.u32()
	if nSkipped > MaxSkippedKeys {
		d.fail("too many skipped keys")
	}
	var lastSeq uint64
	for i := uint32(0); i < nSkipped && d.err == nil; i++ {
		k := skippedKey{dh: d.array32(), n: d.u32()}
		e := skippedEntry{mk: d.array32(), step: d.u32(), seq: d.u64()}
		if _, dup := n.skipped[k]; dup || (i > 0 && e.seq <= lastSeq) || e.seq >= n.seq || e.step > n.step {
			d.fail("inconsistent skipped keys")
		}
		lastSeq = e.seq
		n.skipped[k] = e
	}
	if n.hasCKr && !n.hasDHr {
		// A receiving chain belongs to a remote ratchet key.
		d.fail("receiving chain without a remote ratchet key")
	}
	if err := d.finish(); err != nil {
		return err
	}
	priv := [32]byte(dhs) // a copy: dhs is part of data
	n.dhs = &priv
	n.dhsPub = ratchetPublic(n.dhs)
	n.rand = s.rand
	*s = *n
	return nil
}

func appendOpt32(b []byte, ok bool, v [32]byte) []byte {
	b = appendBool(b, ok)
	if ok {
		b = append(b, v[:]...)
	}
	return b
}

func (d *decoder) opt32() (bool, [32]byte) {
	if !d.bool() {
		return false, [32]byte{}
	}
	return true, d.array32()
}
