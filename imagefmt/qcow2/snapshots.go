package qcow2

import (
	"bufio"
	"encoding/binary"
	"io"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Internal snapshots (spec "Snapshots") are listed, never read: the active
// L1 table in the header is the state vmmount shows.

// maxSnapshotTable bounds the bytes of snapshot table read. qemu allows
// 1 GiB (QCOW_MAX_SNAPSHOTS_SIZE); real tables are a few KiB, and a listing
// has no business holding more than this in memory.
const maxSnapshotTable = 64 << 20

// tableReader reads a variable-length table of the image file
// sequentially, tracking the offset for errors. Every read is bounded by
// the section, so no length from disk can make it allocate beyond what the
// file holds or the limit allows.
type tableReader struct {
	r    *bufio.Reader
	base int64 // file offset of the table
	pos  int64 // bytes consumed
}

func newTableReader(f io.ReaderAt, off, limit int64) *tableReader {
	return &tableReader{r: bufio.NewReaderSize(io.NewSectionReader(f, off, limit), 64<<10), base: off}
}

func (t *tableReader) off() int64 { return t.base + t.pos }

// next returns the next n bytes (a fresh slice).
func (t *tableReader) next(n int) ([]byte, error) {
	b := make([]byte, n)
	m, err := io.ReadFull(t.r, b)
	t.pos += int64(m)
	return b, err
}

func (t *tableReader) skip(n int64) error {
	m, err := t.r.Discard(int(n))
	t.pos += int64(m)
	return err
}

// align8 skips the padding to the next multiple of 8 bytes.
func (t *tableReader) align8() error { return t.skip((8 - t.pos%8) % 8) }

// readSnapshots lists the snapshot table and returns its length in bytes.
func readSnapshots(f io.ReaderAt, size int64, h *ParsedHeader, name string) ([]vdisk.Snapshot, int64, error) {
	if h.NbSnapshots == 0 {
		return nil, 0, nil
	}
	limit := min(size-int64(h.SnapshotsOffset), maxSnapshotTable)
	t := newTableReader(f, int64(h.SnapshotsOffset), limit)
	var out []vdisk.Snapshot
	for i := range int(h.NbSnapshots) {
		at := t.off()
		b, err := t.next(SnapshotHeaderSize)
		if err != nil {
			return nil, 0, snapTableErr(name, at, i, limit)
		}
		sh := DecodeSnapshotHeader(b)
		if sh.ExtraDataSize > MaxSnapshotExtraData {
			return nil, 0, fmtErr(name, at+36, sh.ExtraDataSize, "snapshot %d: extra data larger than %d bytes", i, MaxSnapshotExtraData)
		}
		extra, err := t.next(int(sh.ExtraDataSize))
		if err != nil {
			return nil, 0, snapTableErr(name, at, i, limit)
		}
		id, err := t.next(int(sh.IDStrSize))
		if err != nil {
			return nil, 0, snapTableErr(name, at, i, limit)
		}
		nm, err := t.next(int(sh.NameSize))
		if err != nil {
			return nil, 0, snapTableErr(name, at, i, limit)
		}
		if err := t.align8(); err != nil && i+1 < int(h.NbSnapshots) {
			return nil, 0, snapTableErr(name, at, i, limit)
		}
		s := vdisk.Snapshot{
			ID:       string(id),
			Name:     string(nm),
			VMState:  int64(sh.VMStateSize),
			DateSec:  int64(sh.DateSec),
			DateNsec: int64(sh.DateNsec),
			VMClock:  int64(sh.VMClockNsec & (1<<63 - 1)),
		}
		if len(extra) >= SnapshotExtraVMStateSize {
			s.VMState = int64(binary.BigEndian.Uint64(extra) & (1<<63 - 1))
		}
		if len(extra) >= SnapshotExtraDiskSize {
			s.DiskSize = int64(binary.BigEndian.Uint64(extra[8:]) & (1<<63 - 1))
		}
		out = append(out, s)
	}
	return out, t.pos, nil
}

func snapTableErr(name string, at int64, i int, limit int64) error {
	if limit >= maxSnapshotTable {
		return fmtErr(name, at, nil, "snapshot %d: snapshot table larger than %d bytes", i, maxSnapshotTable)
	}
	return fmtErr(name, at, nil, "snapshot %d: snapshot table reaches past the end of the file", i)
}
