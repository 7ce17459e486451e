package fat

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// file is a regular file's content: its cluster chain, followed once at
// Open up to the file size.
type file struct {
	f    *FS
	ino  uint64
	size int64
	runs []run
	pos  []int64 // file offset of each run
	// err is why the chain stops before size (reads past it fail).
	err error
}

var _ fsys.File = (*file)(nil)

// Open returns the content of regular file ino.
func (f *FS) Open(ino uint64) (fsys.File, error) {
	if ino == rootIno {
		return nil, fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrIsDir)
	}
	de, err := f.entryAt(ino)
	if err != nil {
		return nil, err
	}
	if de.Attr&attrDirectory != 0 {
		return nil, fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrIsDir)
	}
	fl := &file{f: f, ino: ino, size: int64(de.FileSize)}
	if fl.size == 0 {
		return fl, nil
	}
	cs := f.geo.clusterSize
	need := (fl.size + cs - 1) / cs
	if de.firstCluster() == 0 {
		fl.err = f.corrupt(ino, -1, "file of %d bytes has no clusters", fl.size)
		return fl, nil
	}
	runs, n, ended, err := f.fat.chain(ino, de.firstCluster(), need)
	fl.runs = runs
	var p int64
	for _, r := range runs {
		fl.pos = append(fl.pos, p)
		p += int64(r.n) * cs
	}
	switch {
	case err != nil:
		fl.err = err
	case n < need && ended:
		fl.err = f.corrupt(ino, -1, "cluster chain of %d clusters is shorter than the file size %d needs (%d)", n, fl.size, need)
	}
	return fl, nil
}

func (fl *file) Size() int64 { return fl.size }

// Extents: FAT files have no holes.
func (fl *file) Extents() ([]fsys.Range, error) { return nil, nil }

// ReadAt reads file bytes; past the end of the file it returns io.EOF.
func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: inode %d: negative offset", fl.f.name, fl.ino)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	var eof error
	if rem := fl.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	cs := fl.f.geo.clusterSize
	done := 0
	for done < len(p) {
		o := off + int64(done)
		i := sort.Search(len(fl.pos), func(i int) bool { return fl.pos[i] > o }) - 1
		if i < 0 || o >= fl.pos[i]+int64(fl.runs[i].n)*cs {
			err := fl.err
			if err == nil {
				err = fl.f.corrupt(fl.ino, -1, "no cluster for file offset %d", o)
			}
			return done, err
		}
		r := fl.runs[i]
		disk := fl.f.geo.clusterOff(r.start) + (o - fl.pos[i])
		n := min(int64(len(p)-done), fl.pos[i]+int64(r.n)*cs-o)
		m, err := fl.f.r.ReadAt(p[done:done+int(n)], disk)
		done += m
		if m < int(n) {
			if err == nil || errors.Is(err, io.EOF) {
				return done, fl.f.corrupt(fl.ino, disk+int64(m), "file data past the end of the volume")
			}
			return done, fmt.Errorf("%s: inode %d: reading at byte %d: %w", fl.f.name, fl.ino, disk, err)
		}
	}
	return done, eof
}
