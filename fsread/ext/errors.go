package ext

import (
	"fmt"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// corrupt returns a *fsys.CorruptError naming this volume. off is a byte
// offset in the volume, -1 if none.
func (f *FS) corrupt(ino uint64, off int64, format string, args ...any) error {
	return &fsys.CorruptError{FS: f.label, Ino: ino, Off: off, Msg: fmt.Sprintf(format, args...)}
}

// unsupported is a *fsys.CorruptError wrapping fsys.ErrUnsupported, so the
// message still names volume and inode.
func (f *FS) unsupported(ino uint64, format string, args ...any) error {
	return &fsys.CorruptError{FS: f.label, Ino: ino, Off: -1, Msg: fmt.Sprintf(format, args...), Err: fsys.ErrUnsupported}
}

// blockOff is the byte offset of block blk, for error messages.
func (f *FS) blockOff(blk uint64) int64 {
	if blk > uint64(1<<62)/uint64(f.bs) {
		return -1
	}
	return int64(blk) * int64(f.bs)
}

type outsideError struct{ blk, blocks uint64 }

func (e *outsideError) Error() string {
	return fmt.Sprintf("block %d is outside the volume (%d blocks)", e.blk, e.blocks)
}

func errOutsideBlocks(blk, blocks uint64) error { return &outsideError{blk, blocks} }
