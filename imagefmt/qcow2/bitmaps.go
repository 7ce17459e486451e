package qcow2

import "io"

// Persistent dirty bitmaps (spec "Bitmaps"): vmmount lists their names
// (`vmmount info`), it does not read their contents.

// readBitmapNames lists the names in the bitmap directory and returns the
// directory's length in bytes.
func readBitmapNames(f io.ReaderAt, size int64, h *ParsedHeader, name string) ([]string, int64, error) {
	b := h.Bitmaps
	if b == nil {
		return nil, 0, nil
	}
	dirOff, dirSize := b.BitmapDirectoryOffset, b.BitmapDirectorySize
	if dirOff >= uint64(size) || dirSize > uint64(size)-dirOff {
		return nil, 0, fmtErr(name, int64(min(dirOff, 1<<62)), dirSize, "bitmap directory reaches past the end of the file (%d bytes)", size)
	}
	// ParseHeader bounded dirSize to MaxBitmapDirectorySize.
	t := newTableReader(f, int64(dirOff), int64(dirSize))
	var names []string
	for i := range int(b.NbBitmaps) {
		at := t.off()
		hb, err := t.next(BitmapDirEntrySize)
		if err != nil {
			return nil, 0, fmtErr(name, at, nil, "bitmap %d: directory entry past the directory size %d", i, dirSize)
		}
		e := DecodeBitmapDirEntry(hb)
		if e.NameSize == 0 || e.NameSize > MaxBitmapNameSize {
			return nil, 0, fmtErr(name, at+18, e.NameSize, "bitmap %d: bad name size", i)
		}
		if err := t.skip(int64(e.ExtraDataSize)); err != nil {
			return nil, 0, fmtErr(name, at+20, e.ExtraDataSize, "bitmap %d: extra data past the directory size %d", i, dirSize)
		}
		nm, err := t.next(int(e.NameSize))
		if err != nil {
			return nil, 0, fmtErr(name, at, nil, "bitmap %d: name past the directory size %d", i, dirSize)
		}
		_ = t.align8() // the last entry's padding may be missing
		names = append(names, string(nm))
	}
	return names, int64(dirSize), nil
}
