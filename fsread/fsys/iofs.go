package fsys

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"
)

// MaxSymlinks bounds symlink resolution in one path walk (Linux: 40).
const MaxSymlinks = 40

// FS adapts a FileSystem to io/fs: fs.FS, fs.ReadDirFS, fs.StatFS and
// fs.ReadLinkFS. Paths are slash-separated and relative to the filesystem
// root (fs.ValidPath). Open and Stat follow symlinks inside the filesystem,
// an absolute target being taken from its root; Lstat and ReadLink do not.
type FS struct {
	FileSystem
}

var (
	_ fs.FS         = FS{}
	_ fs.ReadDirFS  = FS{}
	_ fs.StatFS     = FS{}
	_ fs.ReadLinkFS = FS{}
)

// NewFS returns the io/fs view of f.
func NewFS(f FileSystem) FS { return FS{f} }

// Resolve walks name from the root and returns its inode. With follow, a
// symlink in the last component is followed too; symlinks in the middle are
// always followed.
func (f FS) Resolve(op, name string, follow bool) (uint64, error) {
	if !fs.ValidPath(name) {
		return 0, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	ino, err := f.walk(name, follow)
	if err != nil {
		return 0, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return ino, nil
}

func (f FS) walk(name string, follow bool) (uint64, error) {
	root := f.Root()
	stack := []uint64{root} // inodes of the directories along the path
	var comps []string
	if name != "." {
		comps = strings.Split(name, "/")
	}
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		dir := stack[len(stack)-1]
		ino, err := f.Lookup(dir, c)
		if err != nil {
			return 0, err
		}
		last := len(comps) == 0
		if last && !follow {
			return ino, nil
		}
		st, err := f.FileSystem.Stat(ino)
		if err != nil {
			return 0, err
		}
		if st.Mode&S_IFMT == S_IFLNK {
			links++
			if links > MaxSymlinks {
				return 0, errors.New("too many levels of symbolic links")
			}
			target, err := f.Readlink(ino)
			if err != nil {
				return 0, err
			}
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			comps = append(strings.Split(target, "/"), comps...)
			continue
		}
		if !last && !st.IsDir() {
			return 0, ErrNotDir
		}
		stack = append(stack, ino)
	}
	return stack[len(stack)-1], nil
}

// Open opens name, following symlinks.
func (f FS) Open(name string) (fs.File, error) {
	ino, err := f.Resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	st, err := f.FileSystem.Stat(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	fi := &FileInfo{name: path.Base(name), Stat: st}
	if st.IsDir() {
		return &dirFile{fsys: f, fi: fi, ino: ino, path: name}, nil
	}
	if st.Mode&S_IFMT != S_IFREG {
		return &specialFile{fi: fi}, nil
	}
	r, err := f.FileSystem.Open(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &regFile{fi: fi, r: r, path: name}, nil
}

// Stat describes name, following symlinks.
func (f FS) Stat(name string) (fs.FileInfo, error) { return f.stat("stat", name, true) }

// Lstat describes name without following a final symlink.
func (f FS) Lstat(name string) (fs.FileInfo, error) { return f.stat("lstat", name, false) }

func (f FS) stat(op, name string, follow bool) (*FileInfo, error) {
	ino, err := f.Resolve(op, name, follow)
	if err != nil {
		return nil, err
	}
	st, err := f.FileSystem.Stat(ino)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return &FileInfo{name: path.Base(name), Stat: st}, nil
}

// ReadLink returns the target of the symlink name.
func (f FS) ReadLink(name string) (string, error) {
	ino, err := f.Resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	t, err := f.Readlink(ino)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return t, nil
}

// ReadDir lists name sorted by file name, as fs.ReadDirFS requires.
func (f FS) ReadDir(name string) ([]fs.DirEntry, error) {
	ino, err := f.Resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	ents, err := f.dirEntries(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	sortEntries(ents)
	return ents, nil
}

func (f FS) dirEntries(ino uint64) ([]fs.DirEntry, error) {
	list, err := f.FileSystem.ReadDir(ino)
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, 0, len(list))
	for _, e := range list {
		if !validName(e.Name) {
			continue // cannot be named through io/fs; the inode-level API still lists it
		}
		out = append(out, &dirEntry{fsys: f.FileSystem, e: e})
	}
	return out, nil
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00")
}

// FileInfo is an fs.FileInfo whose Sys is the *Stat.
type FileInfo struct {
	name string
	*Stat
}

// NewFileInfo returns the fs.FileInfo of a named inode.
func NewFileInfo(name string, st *Stat) *FileInfo { return &FileInfo{name: name, Stat: st} }

func (fi *FileInfo) Name() string       { return fi.name }
func (fi *FileInfo) Size() int64        { return fi.Stat.Size }
func (fi *FileInfo) Mode() fs.FileMode  { return fi.Stat.FileMode() }
func (fi *FileInfo) ModTime() time.Time { return fi.Stat.Mtime }
func (fi *FileInfo) IsDir() bool        { return fi.Stat.IsDir() }
func (fi *FileInfo) Sys() any           { return fi.Stat }

type dirEntry struct {
	fsys FileSystem
	e    DirEntry
	once sync.Once
	fi   *FileInfo
	err  error
}

func (d *dirEntry) Name() string      { return d.e.Name }
func (d *dirEntry) IsDir() bool       { return d.e.Type.IsDir() }
func (d *dirEntry) Type() fs.FileMode { return d.e.Type.Type() }
func (d *dirEntry) Info() (fs.FileInfo, error) {
	d.once.Do(func() {
		st, err := d.fsys.Stat(d.e.Ino)
		if err != nil {
			d.err = err
			return
		}
		d.fi = &FileInfo{name: d.e.Name, Stat: st}
	})
	if d.err != nil {
		return nil, d.err
	}
	return d.fi, nil
}
func (d *dirEntry) String() string { return fs.FormatDirEntry(d) }

type regFile struct {
	fi   *FileInfo
	r    File
	path string
	mu   sync.Mutex
	off  int64
}

func (f *regFile) Stat() (fs.FileInfo, error) { return f.fi, nil }
func (f *regFile) Close() error               { return nil }
func (f *regFile) ReadAt(p []byte, off int64) (int, error) {
	return f.r.ReadAt(p, off)
}
func (f *regFile) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.r.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}
func (f *regFile) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.r.Size()
	default:
		return 0, fs.ErrInvalid
	}
	if offset < 0 {
		return 0, fs.ErrInvalid
	}
	f.off = offset
	return offset, nil
}

type specialFile struct{ fi *FileInfo }

func (f *specialFile) Stat() (fs.FileInfo, error) { return f.fi, nil }
func (f *specialFile) Read([]byte) (int, error)   { return 0, io.EOF }
func (f *specialFile) Close() error               { return nil }

type dirFile struct {
	fsys FS
	fi   *FileInfo
	ino  uint64
	path string
	ents []fs.DirEntry
	read bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: ErrIsDir}
}
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		ents, err := d.fsys.dirEntries(d.ino)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: err}
		}
		d.ents, d.read = ents, true
	}
	if n <= 0 {
		out := d.ents
		d.ents = nil
		return out, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.ents))
	out := d.ents[:n:n]
	d.ents = d.ents[n:]
	return out, nil
}
