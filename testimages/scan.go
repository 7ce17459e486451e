package testimages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// ScanOptions tune ScanDirWith.
type ScanOptions struct {
	// ExtraXattrs are read on every entry although listxattr does not
	// list them (ntfs-3g's system.ntfs_attrib_be); an entry without one
	// just lacks it.
	ExtraXattrs []string
}

// ScanDir makes the manifest of a host directory tree (a kernel loop
// mount, an ntfs-3g mount, a fixture's source tree): lstat through statx
// (with birth time where the filesystem has one), content SHA-256,
// readlink, every xattr. Every entry is stat'ed before any symlink is read
// (readlink updates atime, and hardlinked symlinks exist), and files and
// directories are opened with O_NOATIME, so a scan of a writable tree sees
// the atimes as they were. Symlinks are not followed. An entry that cannot
// be read gets Err and the scan goes on.
func ScanDir(root string) (*Manifest, error) { return ScanDirWith(root, ScanOptions{}) }

// ScanDirWith is ScanDir with options.
func ScanDirWith(root string, o ScanOptions) (*Manifest, error) {
	m := &Manifest{Source: "ScanDir " + root}
	var walk func(rel string) error
	walk = func(rel string) error {
		full := filepath.Join(root, filepath.FromSlash(rel))
		e, err := statHostEntry(full, rel)
		if err != nil {
			return err
		}
		m.Entries = append(m.Entries, *e)
		if !e.IsDir() || e.Err != "" {
			return nil
		}
		names, err := readDirNames(full)
		if err != nil {
			m.Entries[len(m.Entries)-1].Err = err.Error()
			return nil
		}
		for _, n := range names {
			child := n
			if rel != "." {
				child = rel + "/" + n
			}
			if err := walk(child); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, err
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Err == "" {
			readHostEntry(filepath.Join(root, filepath.FromSlash(e.Path)), e, o)
		}
	}
	m.Sort()
	return m, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := openNoatime(dir, unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// openNoatime opens read-only with O_NOATIME, which only the owner or root
// may use; it retries without.
func openNoatime(name string, flags int) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOATIME|flags, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(name, os.O_RDONLY|flags, 0)
	}
	return f, err
}

// statHostEntry describes one host path from statx; only a failing statx
// of the root is an error, other failures go to Entry.Err.
func statHostEntry(full, rel string) (*Entry, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, full, unix.AT_SYMLINK_NOFOLLOW,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st)
	if err != nil {
		if rel == "." {
			return nil, fmt.Errorf("ScanDir %s: %w", full, err)
		}
		return &Entry{Path: rel, Err: "statx: " + err.Error()}, nil
	}
	e := &Entry{
		Path:   rel,
		Mode:   uint32(st.Mode),
		Uid:    st.Uid,
		Gid:    st.Gid,
		Size:   int64(st.Size),
		Nlink:  st.Nlink,
		Ino:    st.Ino,
		Blocks: int64(st.Blocks),
		Atime:  stxTime(st.Atime),
		Mtime:  stxTime(st.Mtime),
		Ctime:  stxTime(st.Ctime),
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		e.Btime = stxTime(st.Btime)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Rdev = unix.Mkdev(st.Rdev_major, st.Rdev_minor)
	}
	return e, nil
}

// readHostEntry adds content hash, symlink target and xattrs.
func readHostEntry(full string, e *Entry, o ScanOptions) {
	var errs []string
	switch e.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if sum, err := hashHostFile(full); err != nil {
			errs = append(errs, err.Error())
		} else {
			e.SHA256 = sum
		}
	case unix.S_IFLNK:
		if t, err := os.Readlink(full); err != nil {
			errs = append(errs, err.Error())
		} else {
			e.Target = t
		}
	}
	xa, err := hostXattrs(full, o.ExtraXattrs)
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(xa) > 0 {
		e.Xattrs = xa
	}
	e.Err = strings.Join(errs, "; ")
}

func stxTime(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)).UTC() }

func hashHostFile(name string) (string, error) {
	f, err := openNoatime(name, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hostXattrs reads every xattr listxattr names, plus extra ones if present.
func hostXattrs(name string, extra []string) (map[string]string, error) {
	names, err := xattrList(name)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range append(names, extra...) {
		if _, ok := out[n]; ok {
			continue
		}
		v, err := xattrGet(name, n)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("getxattr %s: %w", n, err)
		}
		out[n] = XattrValue(v)
	}
	return out, nil
}

func xattrList(name string) ([]string, error) {
	for size := 1024; size <= 1<<20; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr: %w", err)
		}
		var names []string
		for _, n := range bytes.Split(buf[:n], []byte{0}) {
			if len(n) > 0 {
				names = append(names, string(n))
			}
		}
		return names, nil
	}
	return nil, fmt.Errorf("listxattr: list too long")
}

func xattrGet(name, attr string) ([]byte, error) {
	for size := 4096; size <= 1<<24; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(name, attr, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.E2BIG
}

// ScanFS makes the manifest of a filesystem read by vmmount, through the
// inode-level API, for Compare against an oracle. Directory loops and
// directories reached twice are recorded as errors, not followed; names
// that cannot be path components ("", ".", "..", containing "/" or NUL)
// are recorded with an error under a quoted name.
func ScanFS(f fsys.FileSystem) (*Manifest, error) {
	m := &Manifest{Source: "ScanFS " + f.Info().Type}
	seenDirs := map[uint64]string{}
	var walk func(rel string, ino uint64, depth int)
	walk = func(rel string, ino uint64, depth int) {
		e := scanFSEntry(f, rel, ino)
		if !e.IsDir() || e.Err != "" {
			m.Entries = append(m.Entries, *e)
			return
		}
		if prev, ok := seenDirs[ino]; ok {
			e.Err = fmt.Sprintf("directory inode %d already seen at %s", ino, prev)
			m.Entries = append(m.Entries, *e)
			return
		}
		seenDirs[ino] = rel
		if depth > 4096 {
			e.Err = "directory nesting deeper than 4096"
			m.Entries = append(m.Entries, *e)
			return
		}
		ents, err := f.ReadDir(ino)
		if err != nil {
			e.Err = "readdir: " + err.Error()
		}
		m.Entries = append(m.Entries, *e)
		for _, d := range ents {
			name := d.Name
			bad := name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00")
			if bad {
				name = fmt.Sprintf("%q", name)
			}
			child := name
			if rel != "." {
				child = rel + "/" + name
			}
			if bad {
				m.Entries = append(m.Entries, Entry{Path: child, Ino: d.Ino, Err: "invalid name"})
				continue
			}
			walk(child, d.Ino, depth+1)
		}
	}
	root := f.Root()
	if _, err := f.Stat(root); err != nil {
		return nil, fmt.Errorf("ScanFS: root inode %d: %w", root, err)
	}
	walk(".", root, 0)
	m.Sort()
	return m, nil
}

func scanFSEntry(f fsys.FileSystem, rel string, ino uint64) *Entry {
	st, err := f.Stat(ino)
	if err != nil {
		return &Entry{Path: rel, Ino: ino, Err: "stat: " + err.Error()}
	}
	e := &Entry{
		Path: rel, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Size: st.Size, Nlink: st.Nlink,
		Ino: st.Ino, Rdev: st.Rdev, Blocks: st.Blocks,
		Atime: st.Atime.UTC(), Mtime: st.Mtime.UTC(), Ctime: st.Ctime.UTC(),
	}
	if !st.Btime.IsZero() {
		e.Btime = st.Btime.UTC()
	}
	var errs []string
	switch st.Mode & fsys.S_IFMT {
	case fsys.S_IFREG:
		sum, err := hashFSFile(f, ino)
		if err != nil {
			errs = append(errs, err.Error())
		}
		e.SHA256 = sum
	case fsys.S_IFLNK:
		t, err := f.Readlink(ino)
		if err != nil {
			errs = append(errs, "readlink: "+err.Error())
		}
		e.Target = t
	}
	names, err := f.Xattrs(ino)
	if err != nil {
		errs = append(errs, "xattrs: "+err.Error())
	}
	for _, n := range names {
		v, err := f.Xattr(ino, n)
		if err != nil {
			errs = append(errs, fmt.Sprintf("xattr %s: %v", n, err))
			continue
		}
		if e.Xattrs == nil {
			e.Xattrs = map[string]string{}
		}
		e.Xattrs[n] = XattrValue(v)
	}
	e.Err = strings.Join(errs, "; ")
	return e
}

// hashFSFile reads a file through its io.ReaderAt up to Size; a short read
// before Size is an error.
func hashFSFile(f fsys.FileSystem, ino uint64) (string, error) {
	r, err := f.Open(ino)
	if err != nil {
		return "", fmt.Errorf("open: %w", err)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	size := r.Size()
	for off := int64(0); off < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		if err != nil && !(err == io.EOF && off == size) {
			return "", fmt.Errorf("read at %d: %w", off, err)
		}
		if n == 0 {
			return "", fmt.Errorf("read at %d: no progress", off)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
