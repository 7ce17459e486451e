package ntfswrite

import "math/bits"

// Bitmaps kept in attributes: $Bitmap's $DATA (clusters), $MFT's $BITMAP
// (records), a directory's $BITMAP $I30 (index blocks). Bit i is bit i%8
// of byte i/8.

const bitChunk = 64 << 10

// getBit reads bit i of an attribute's value.
func (f *FS) getBit(a *rattr, i int64) (bool, error) {
	var b [1]byte
	if err := f.valueRead(a, i/8, b[:]); err != nil {
		return false, err
	}
	return b[0]&(1<<(i%8)) != 0, nil
}

// setBits sets (or clears) bits [i, i+n) of an attribute's value.
func (f *FS) setBits(a *rattr, i, n int64, v bool) error {
	for n > 0 {
		lo := i / 8
		hi := min((i+n+7)/8, lo+bitChunk)
		b := make([]byte, hi-lo)
		if err := f.valueRead(a, lo, b); err != nil {
			return err
		}
		for ; n > 0 && i < hi*8; i, n = i+1, n-1 {
			if v {
				b[i/8-lo] |= 1 << (i % 8)
			} else {
				b[i/8-lo] &^= 1 << (i % 8)
			}
		}
		if err := f.valueWrite(a, lo, b); err != nil {
			return err
		}
	}
	return nil
}

// findClear returns the first clear bit in [from, to) of an attribute's
// value.
func (f *FS) findClear(a *rattr, from, to int64) (int64, bool, error) {
	for i := from; i < to; {
		lo := i / 8
		hi := min((to+7)/8, lo+bitChunk)
		b := make([]byte, hi-lo)
		if err := f.valueRead(a, lo, b); err != nil {
			return 0, false, err
		}
		for ; i < to && i < hi*8; i++ {
			c := b[i/8-lo]
			if c == 0xFF && i%8 == 0 {
				i += 7
				continue
			}
			if c&(1<<(i%8)) == 0 {
				return i, true, nil
			}
		}
	}
	return 0, false, nil
}

// freeRun finds in [from, to) the first run of clear bits: of at least
// want bits when whole (returning want of them), else any (up to want).
func (f *FS) freeRun(a *rattr, from, to, want int64, whole bool) (start, n int64, err error) {
	runStart, runLen := int64(-1), int64(0)
	for i := from; i < to; {
		lo := i / 8
		hi := min((to+7)/8, lo+bitChunk)
		b := make([]byte, hi-lo)
		if err := f.valueRead(a, lo, b); err != nil {
			return 0, 0, err
		}
		for i < to && i < hi*8 {
			c := b[i/8-lo]
			if i%8 == 0 && i+8 <= to {
				switch {
				case c == 0xFF:
					if runLen > 0 && !whole {
						return runStart, min(runLen, want), nil
					}
					runStart, runLen = -1, 0
					i += 8
					continue
				case c == 0:
					if runLen == 0 {
						runStart = i
					}
					runLen += 8
					i += 8
					if runLen >= want {
						return runStart, want, nil
					}
					continue
				}
			}
			if c&(1<<(i%8)) == 0 {
				if runLen == 0 {
					runStart = i
				}
				runLen++
				if runLen >= want {
					return runStart, want, nil
				}
			} else {
				if runLen > 0 && !whole {
					return runStart, runLen, nil
				}
				runStart, runLen = -1, 0
			}
			i++
		}
	}
	if runLen > 0 && !whole {
		return runStart, min(runLen, want), nil
	}
	return -1, 0, nil
}

// popcount counts set bits of a byte slice (tests and accounting).
func popcount(b []byte) int {
	n := 0
	for _, c := range b {
		n += bits.OnesCount8(c)
	}
	return n
}
