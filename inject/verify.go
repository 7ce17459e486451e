package inject

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/vmmount/vmmount/fsread/ext"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/fsread/ntfs"
)

// verify reads what was written back through vmmount's own reader
// (fsread/ext, which checks every checksum it reads, or fsread/ntfs: a
// separate implementation from the writer's): each path must be there
// with its type, size and content (the source read again) or target, on
// ext also its mode and owner (NTFS has neither), and the reader must have
// no warning it did not have before. r is the disk's guest view after the
// writes.
func (v *volume) verify(r io.ReaderAt, checks []check) error {
	var fsr fsys.FileSystem
	var err error
	if v.fsType == "ntfs" {
		fsr, err = ntfs.Open(v.section(r), v.size, ntfs.Options{Name: v.path})
	} else {
		fsr, err = ext.Open(v.section(r), v.size, ext.Options{Name: v.path})
	}
	if err != nil {
		return fmt.Errorf("%w: the filesystem does not open after writing: %v", errVerify, err)
	}
	defer fsr.Close()
	for _, w := range fsr.Warnings() {
		if !slices.Contains(v.warnBefore, w) {
			return fmt.Errorf("%w: new warning reading the filesystem: %s", errVerify, w)
		}
	}
	for _, c := range checks {
		if err := verifyOne(fsr, c, v.fsType != "ntfs"); err != nil {
			return fmt.Errorf("%w: %s/%s: %v", errVerify, v.path, c.rel, err)
		}
	}
	return nil
}

func verifyOne(fsr fsys.FileSystem, c check, unixPerms bool) error {
	ino := fsr.Root()
	for _, name := range strings.Split(c.rel, "/") {
		var err error
		if ino, err = fsr.Lookup(ino, name); err != nil {
			return err
		}
	}
	st, err := fsr.Stat(ino)
	if err != nil {
		return err
	}
	if got := uint16(st.Mode & fsys.S_IFMT); got != c.kind {
		return fmt.Errorf("type %#o, want %#o", got, c.kind)
	}
	if unixPerms {
		if c.kind != modeLink && uint16(st.Mode&0o7777) != c.perm {
			return fmt.Errorf("mode %#o, want %#o", st.Mode&0o7777, c.perm)
		}
		if st.Uid != c.uid || st.Gid != c.gid {
			return fmt.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, c.uid, c.gid)
		}
	}
	switch c.kind {
	case modeLink:
		t, err := fsr.Readlink(ino)
		if err != nil {
			return err
		}
		if t != c.target {
			return fmt.Errorf("target %q, want %q", t, c.target)
		}
	case modeReg:
		if st.Size != c.size {
			return fmt.Errorf("size %d, want %d", st.Size, c.size)
		}
		f, err := fsr.Open(ino)
		if err != nil {
			return err
		}
		a, b := make([]byte, 1<<20), make([]byte, 1<<20)
		for off := int64(0); off < c.size; off += int64(len(a)) {
			n := int(min(int64(len(a)), c.size-off))
			if _, err := f.ReadAt(a[:n], off); err != nil && err != io.EOF {
				return fmt.Errorf("reading it back: %v", err)
			}
			if _, err := c.src.ReadAt(b[:n], off); err != nil && err != io.EOF {
				return fmt.Errorf("reading the source again: %v", err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				return fmt.Errorf("content differs from %s in the MiB at %d", c.src.path, off)
			}
		}
	}
	return nil
}
