package extwrite

import (
	"fmt"
	"io"
	"sort"
)

// Device is the volume's bytes as they are before the transaction.
type Device interface {
	ReadAt(p []byte, off int64) (int, error)
}

// Content is what a new or replaced regular file holds: Size bytes read
// through ReadAt when the changes are written.
type Content interface {
	io.ReaderAt
	Size() int64
}

// stage holds the transaction: metadata blocks as they will be (read from
// the device on first modification) and runs of data blocks to fill from
// Content. Nothing here writes to the device.
type stage struct {
	dev    Device
	bs     int
	blocks uint64
	name   string

	mod  map[uint64][]byte // modified blocks
	data []dataRun
	// budget bounds the bytes of modified metadata (a hostile image
	// cannot make a transaction grow without end).
	bytes int64
}

// maxStagedBytes bounds the staged metadata of one transaction.
const maxStagedBytes = 1 << 30

// dataRun is n blocks from blk on, filled with src[off:off+length] and
// zeros after it.
type dataRun struct {
	blk    uint64
	n      uint64
	src    Content
	off    int64
	length int64
}

func newStage(dev Device, bs int, blocks uint64, name string) *stage {
	return &stage{dev: dev, bs: bs, blocks: blocks, name: name, mod: map[uint64][]byte{}}
}

func (s *stage) checkBlock(blk uint64) error {
	if blk >= s.blocks {
		return fmt.Errorf("%s: block %d is outside the filesystem (%d blocks)", s.name, blk, s.blocks)
	}
	return nil
}

// read returns block blk as the transaction sees it. The slice must not be
// modified (it may be the staged copy).
func (s *stage) read(blk uint64) ([]byte, error) {
	if b, ok := s.mod[blk]; ok {
		return b, nil
	}
	if err := s.checkBlock(blk); err != nil {
		return nil, err
	}
	b := make([]byte, s.bs)
	if err := s.readDev(b, int64(blk)*int64(s.bs)); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *stage) readDev(b []byte, off int64) error {
	n, err := s.dev.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: reading %d bytes at offset %d: %w", s.name, len(b), off, err)
}

// modify returns the staged copy of blk for changing in place.
func (s *stage) modify(blk uint64) ([]byte, error) {
	if b, ok := s.mod[blk]; ok {
		return b, nil
	}
	b, err := s.read(blk)
	if err != nil {
		return nil, err
	}
	return b, s.put(blk, b)
}

// fresh stages blk as a new block of zeros, without reading it: for blocks
// the transaction allocates.
func (s *stage) fresh(blk uint64) ([]byte, error) {
	if err := s.checkBlock(blk); err != nil {
		return nil, err
	}
	b := make([]byte, s.bs)
	return b, s.put(blk, b)
}

func (s *stage) put(blk uint64, b []byte) error {
	if _, ok := s.mod[blk]; !ok {
		s.bytes += int64(s.bs)
		if s.bytes > maxStagedBytes {
			return fmt.Errorf("%s: transaction changes more than %d bytes of metadata", s.name, maxStagedBytes)
		}
	}
	s.mod[blk] = b
	return nil
}

// Change is one range of the volume the transaction writes: either Data,
// or Len bytes made of Src[SrcOff:SrcOff+SrcLen] followed by zeros.
type Change struct {
	Off  int64 // byte offset in the volume
	Len  int64
	Data []byte
	// Src is the content of a file; nil for metadata.
	Src    Content
	SrcOff int64
	SrcLen int64
}

// Metadata says whether the change is a metadata block (Data set).
func (c Change) Metadata() bool { return c.Src == nil }

// changes lists every staged block and data run, sorted by offset, with
// adjacent metadata blocks kept apart (each is one block).
func (s *stage) changes() []Change {
	out := make([]Change, 0, len(s.mod)+len(s.data))
	for blk, b := range s.mod {
		out = append(out, Change{Off: int64(blk) * int64(s.bs), Len: int64(s.bs), Data: b})
	}
	for _, r := range s.data {
		out = append(out, Change{Off: int64(r.blk) * int64(s.bs), Len: int64(r.n) * int64(s.bs), Src: r.src, SrcOff: r.off, SrcLen: r.length})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	return out
}
