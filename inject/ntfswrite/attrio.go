package ntfswrite

import (
	"encoding/binary"
	"fmt"
	"time"
)

func decodeStruct(b []byte, v any) (int, error) { return binary.Decode(b, le, v) }

// nrRead reads b from offset off of the clusters runs map, through the
// stage; holes read as zeros.
func (f *FS) nrRead(runs []run, off int64, b []byte) error {
	return f.nrIO(runs, off, b, false)
}

// nrWrite stages b at offset off of the clusters runs map; the range must
// be allocated.
func (f *FS) nrWrite(runs []run, off int64, b []byte) error {
	return f.nrIO(runs, off, b, true)
}

func (f *FS) nrIO(runs []run, off int64, b []byte, write bool) error {
	cs := f.clusterSize
	for len(b) > 0 {
		vcn := off / cs
		lcn, left, ok := lcnOf(runs, vcn)
		if !ok || off < 0 {
			return f.corrupt("offset %d is past the attribute's clusters", off)
		}
		in := off % cs
		n := min(int64(len(b)), left*cs-in)
		switch {
		case lcn < 0 && write:
			return f.corrupt("writing into a hole at offset %d", off)
		case lcn < 0:
			clear(b[:n])
		case write:
			if err := f.st.writeAt(b[:n], lcn*cs+in); err != nil {
				return err
			}
		default:
			if err := f.st.readAt(b[:n], lcn*cs+in); err != nil {
				return err
			}
		}
		b, off = b[n:], off+n
	}
	return nil
}

// valueRead reads bytes of an attribute's value: resident bytes, or
// clusters up to the initialized size and zeros past it.
func (f *FS) valueRead(a *rattr, off int64, b []byte) error {
	size := a.size
	if a.resident {
		size = int64(len(a.value))
	}
	if off < 0 || off+int64(len(b)) > size {
		return f.corrupt("reading %d bytes at %d of attribute %#x of %d bytes", len(b), off, a.typ, size)
	}
	if a.resident {
		copy(b, a.value[off:])
		return nil
	}
	if a.flags&(attrCompressionMask|attrEncrypted) != 0 {
		return f.refuse("attribute %#x is compressed or encrypted", a.typ)
	}
	n := max(0, min(int64(len(b)), a.init-off))
	if n > 0 {
		if err := f.nrRead(a.runs, off, b[:n]); err != nil {
			return err
		}
	}
	clear(b[n:])
	return nil
}

// valueSize is an attribute's value size.
func (a *rattr) valueSize() int64 {
	if a.resident {
		return int64(len(a.value))
	}
	return a.size
}

// ntfsTime converts t to NTFS time: 100 ns units since 1601-01-01 UTC.
func ntfsTime(t time.Time) (int64, error) {
	const maxSec = (1<<63 - 1 - ntfsEpochDelta) / 10_000_000
	const minSec = -ntfsEpochDelta / 10_000_000
	s := t.Unix()
	if s < minSec || s > maxSec-1 {
		return 0, fmt.Errorf("time %v is outside what NTFS stores (1601 to 30828): %w", t, ErrRefused)
	}
	return s*10_000_000 + int64(t.Nanosecond()/100) + ntfsEpochDelta, nil
}

// valueWrite changes bytes of an attribute's value in place (inside its
// initialized size).
func (f *FS) valueWrite(a *rattr, off int64, b []byte) error {
	if a.resident {
		if off < 0 || off+int64(len(b)) > int64(len(a.value)) {
			return f.corrupt("writing %d bytes at %d of resident attribute %#x of %d bytes", len(b), off, a.typ, len(a.value))
		}
		copy(a.value[off:], b)
		a.changed()
		return nil
	}
	if off < 0 || off+int64(len(b)) > a.init {
		return f.corrupt("writing %d bytes at %d of attribute %#x initialized to %d bytes", len(b), off, a.typ, a.init)
	}
	return f.nrWrite(a.runs, off, b)
}
