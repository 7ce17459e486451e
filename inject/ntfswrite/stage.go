package ntfswrite

import (
	"fmt"
	"io"
	"sort"
)

// Device is the volume's bytes as they are before the transaction.
type Device interface {
	ReadAt(p []byte, off int64) (int, error)
}

// Content is what a new or replaced file holds: Size bytes read through
// ReadAt when the changes are written.
type Content interface {
	io.ReaderAt
	Size() int64
}

// stage holds the transaction: units of the volume as they will be (read
// from the device on first modification) and runs of clusters to fill
// from a Content. Nothing here writes to the device.
//
// A unit is the smallest of the cluster, MFT record and index block sizes
// (powers of two of at least 512 bytes), so every MFT record, index block
// and cluster is made of whole units, each contiguous on the volume even
// when the object spans clusters that are not.
type stage struct {
	dev  Device
	unit int64
	size int64 // bytes of the volume the transaction may touch
	name string

	mod  map[int64][]byte // unit index -> bytes
	data []dataRun
	// bytes bounds the staged metadata (a hostile volume cannot make a
	// transaction grow without end).
	bytes int64
}

// maxStagedBytes bounds the staged metadata of one transaction.
const maxStagedBytes = 1 << 30

// dataRun is n clusters from lcn on, filled with src[off:off+length] and
// zeros after it.
type dataRun struct {
	lcn    int64
	n      int64
	src    Content
	off    int64
	length int64
}

func newStage(dev Device, unit, size int64, name string) *stage {
	return &stage{dev: dev, unit: unit, size: size, name: name, mod: map[int64][]byte{}}
}

func (s *stage) readDev(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > s.size {
		return fmt.Errorf("%s: %d bytes at offset %d are outside the volume (%d bytes): %w", s.name, len(b), off, s.size, ErrCorrupt)
	}
	n, err := s.dev.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: reading %d bytes at offset %d: %w", s.name, len(b), off, err)
}

// readAt reads b at volume offset off as the transaction sees it.
func (s *stage) readAt(b []byte, off int64) error {
	if err := s.readDev(b, off); err != nil {
		return err
	}
	if len(s.mod) == 0 {
		return nil
	}
	for u := off / s.unit; u*s.unit < off+int64(len(b)); u++ {
		m, ok := s.mod[u]
		if !ok {
			continue
		}
		uo := u * s.unit
		lo, hi := max(uo, off), min(uo+s.unit, off+int64(len(b)))
		copy(b[lo-off:hi-off], m[lo-uo:hi-uo])
	}
	return nil
}

// unitFor returns the staged copy of unit u for changing in place.
func (s *stage) unitFor(u int64, fresh bool) ([]byte, error) {
	if m, ok := s.mod[u]; ok {
		if fresh {
			clear(m)
		}
		return m, nil
	}
	m := make([]byte, s.unit)
	if !fresh {
		if err := s.readAt(m, u*s.unit); err != nil {
			return nil, err
		}
	} else if u < 0 || (u+1)*s.unit > s.size {
		return nil, fmt.Errorf("%s: unit at offset %d is outside the volume: %w", s.name, u*s.unit, ErrCorrupt)
	}
	s.bytes += s.unit
	if s.bytes > maxStagedBytes {
		return nil, fmt.Errorf("%s: transaction changes more than %d bytes of metadata: %w", s.name, maxStagedBytes, ErrRefused)
	}
	s.mod[u] = m
	return m, nil
}

// writeAt stages b at volume offset off.
func (s *stage) writeAt(b []byte, off int64) error {
	for u := off / s.unit; u*s.unit < off+int64(len(b)); u++ {
		uo := u * s.unit
		lo, hi := max(uo, off), min(uo+s.unit, off+int64(len(b)))
		m, err := s.unitFor(u, lo == uo && hi == uo+s.unit)
		if err != nil {
			return err
		}
		copy(m[lo-uo:hi-uo], b[lo-off:hi-off])
	}
	return nil
}

// zero stages n bytes of zeros at off (clusters the transaction
// allocates for metadata), without reading them.
func (s *stage) zero(off, n int64) error {
	if off%s.unit != 0 || n%s.unit != 0 {
		return fmt.Errorf("%s: zeroing %d bytes at %d: not whole units", s.name, n, off)
	}
	for u := off / s.unit; u < (off+n)/s.unit; u++ {
		if _, err := s.unitFor(u, true); err != nil {
			return err
		}
	}
	return nil
}

// Change is one range of the volume the transaction writes: either Data,
// or Len bytes made of Src[SrcOff:SrcOff+SrcLen] followed by zeros.
type Change struct {
	Off  int64 // byte offset in the volume
	Len  int64
	Data []byte
	// Src is the content of a file (or a fill pattern); nil for metadata.
	Src    Content
	SrcOff int64
	SrcLen int64
}

// Metadata says whether the change is staged bytes (Data set).
func (c Change) Metadata() bool { return c.Src == nil }

// changes lists every staged unit (adjacent ones merged) and data run,
// sorted by offset.
func (s *stage) changes(clusterSize int64) []Change {
	us := make([]int64, 0, len(s.mod))
	for u := range s.mod {
		us = append(us, u)
	}
	sort.Slice(us, func(i, j int) bool { return us[i] < us[j] })
	var out []Change
	for i := 0; i < len(us); {
		j := i + 1
		for j < len(us) && us[j] == us[j-1]+1 && int64(j-i)*s.unit < 1<<20 {
			j++
		}
		b := make([]byte, 0, int64(j-i)*s.unit)
		for _, u := range us[i:j] {
			b = append(b, s.mod[u]...)
		}
		out = append(out, Change{Off: us[i] * s.unit, Len: int64(len(b)), Data: b})
		i = j
	}
	for _, r := range s.data {
		out = append(out, Change{Off: r.lcn * clusterSize, Len: r.n * clusterSize, Src: r.src, SrcOff: r.off, SrcLen: r.length})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	return out
}

// fill is a Content of n bytes of one value (the 0xFF of an empty
// $LogFile).
type fill struct {
	b byte
	n int64
}

func (c fill) Size() int64 { return c.n }

func (c fill) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.n {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), c.n-off))
	for i := range p[:n] {
		p[i] = c.b
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
