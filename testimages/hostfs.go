package testimages

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// HostFS is an fsys.FileSystem over a host directory, with the host's
// inode numbers. It lets code written against fsys (ScanFS, the FUSE
// layer, restore) be tested without a guest filesystem reader, and is the
// reference ScanFS is checked against. Only inodes reached through
// ReadDir or Lookup from the root are known.
type HostFS struct {
	root    string
	rootIno uint64
	mu      sync.Mutex
	paths   map[uint64]string
}

var _ fsys.FileSystem = (*HostFS)(nil)

// NewHostFS opens dir.
func NewHostFS(dir string) (*HostFS, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("HostFS %s: %w", dir, err)
	}
	return &HostFS{root: dir, rootIno: st.Ino, paths: map[uint64]string{st.Ino: dir}}, nil
}

func (h *HostFS) path(ino uint64) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.paths[ino]
	if !ok {
		return "", fmt.Errorf("HostFS: inode %d not reached yet: %w", ino, fs.ErrNotExist)
	}
	return p, nil
}

func (h *HostFS) remember(ino uint64, p string) {
	h.mu.Lock()
	if _, ok := h.paths[ino]; !ok {
		h.paths[ino] = p
	}
	h.mu.Unlock()
}

func (h *HostFS) Root() uint64 { return h.rootIno }

func (h *HostFS) Stat(ino uint64) (*fsys.Stat, error) {
	p, err := h.path(ino)
	if err != nil {
		return nil, err
	}
	e, err := statHostEntry(p, p)
	if err != nil {
		return nil, err
	}
	if e.Err != "" {
		return nil, errors.New(e.Err)
	}
	return &fsys.Stat{Ino: e.Ino, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid, Size: e.Size, Nlink: e.Nlink,
		Rdev: e.Rdev, Blocks: e.Blocks, Atime: e.Atime, Mtime: e.Mtime, Ctime: e.Ctime, Btime: e.Btime}, nil
}

func (h *HostFS) Lookup(dir uint64, name string) (uint64, error) {
	p, err := h.path(dir)
	if err != nil {
		return 0, err
	}
	child := filepath.Join(p, name)
	var st unix.Stat_t
	if err := unix.Lstat(child, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("%s: %w", child, fs.ErrNotExist)
		}
		return 0, err
	}
	h.remember(st.Ino, child)
	return st.Ino, nil
}

func (h *HostFS) ReadDir(dir uint64) ([]fsys.DirEntry, error) {
	p, err := h.path(dir)
	if err != nil {
		return nil, err
	}
	names, err := readDirNames(p)
	if err != nil {
		return nil, err
	}
	out := make([]fsys.DirEntry, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		child := filepath.Join(p, n)
		if err := unix.Lstat(child, &st); err != nil {
			return nil, err
		}
		h.remember(st.Ino, child)
		out = append(out, fsys.DirEntry{Name: n, Ino: st.Ino, Type: fsys.UnixMode(st.Mode).Type()})
	}
	return out, nil
}

func (h *HostFS) Readlink(ino uint64) (string, error) {
	p, err := h.path(ino)
	if err != nil {
		return "", err
	}
	return os.Readlink(p)
}

func (h *HostFS) Open(ino uint64) (fsys.File, error) {
	p, err := h.path(ino)
	if err != nil {
		return nil, err
	}
	f, err := openNoatime(p, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fsys.ErrIsDir
	}
	// The descriptor lives as long as the process: fsys.File has no
	// Close, and HostFS serves tests.
	return &hostFile{f: f, size: fi.Size()}, nil
}

type hostFile struct {
	f    *os.File
	size int64
}

func (f *hostFile) Size() int64 { return f.size }

func (f *hostFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.size {
		return 0, io.EOF
	}
	short := int64(len(p)) > f.size-off
	if short {
		p = p[:f.size-off]
	}
	n, err := f.f.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// Extents lists data ranges with SEEK_DATA/SEEK_HOLE.
func (f *hostFile) Extents() ([]fsys.Range, error) {
	var out []fsys.Range
	fd := int(f.f.Fd())
	for off := int64(0); off < f.size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		hole = min(hole, f.size)
		out = append(out, fsys.Range{Off: data, Len: hole - data})
		off = hole
	}
	if out == nil {
		out = []fsys.Range{}
	}
	return out, nil
}

func (h *HostFS) Xattrs(ino uint64) ([]string, error) {
	p, err := h.path(ino)
	if err != nil {
		return nil, err
	}
	return xattrList(p)
}

func (h *HostFS) Xattr(ino uint64, name string) ([]byte, error) {
	p, err := h.path(ino)
	if err != nil {
		return nil, err
	}
	v, err := xattrGet(p, name)
	if errors.Is(err, unix.ENODATA) {
		return nil, fsys.ErrNoXattr
	}
	return v, err
}

func (h *HostFS) Info() *fsys.Info   { return &fsys.Info{Type: "host", NameMax: 255} }
func (h *HostFS) Warnings() []string { return nil }
func (h *HostFS) Close() error       { return nil }
