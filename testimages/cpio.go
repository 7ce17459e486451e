package testimages

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
)

// cpioArchive collects the entries of an initramfs and writes them as a
// "newc" cpio archive, the format the kernel unpacks into its rootfs
// (kernel Documentation/driver-api/early-userspace/buffer-format.rst). Built
// in Go rather than with cpio(1) so device nodes (/dev/console) need no
// mknod and the archive is the same bytes on every machine.
type cpioArchive struct {
	entries map[string]cpioEntry
}

type cpioEntry struct {
	mode         uint32 // S_IF* type bits | permissions
	data         []byte // file content or symlink target
	rmajor, rmin uint32 // device number of a character device
}

// Type bits of st_mode as cpio stores them (octal, as in stat(2)).
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

func newCpioArchive() *cpioArchive {
	return &cpioArchive{entries: map[string]cpioEntry{}}
}

// add records name (absolute or relative, cleaned) with its parents.
func (a *cpioArchive) add(name string, e cpioEntry) {
	name = path.Clean("/" + name)[1:]
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = cpioEntry{mode: cpioDir | 0o755}
		}
	}
	a.entries[name] = e
}

func (a *cpioArchive) file(name string, perm fs.FileMode, data []byte) {
	a.add(name, cpioEntry{mode: cpioFile | uint32(perm.Perm()), data: data})
}

func (a *cpioArchive) dir(name string) { a.add(name, cpioEntry{mode: cpioDir | 0o755}) }

func (a *cpioArchive) symlink(name, target string) {
	a.add(name, cpioEntry{mode: cpioSymlink | 0o777, data: []byte(target)})
}

func (a *cpioArchive) charDev(name string, major, minor uint32) {
	a.add(name, cpioEntry{mode: cpioCharDev | 0o600, rmajor: major, rmin: minor})
}

// writeTo writes the archive, parents before children, ending with the
// TRAILER!!! entry. All files are owned by root with mtime 0.
func (a *cpioArchive) writeTo(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names) // a parent sorts before anything under it
	ino := uint32(1)
	for _, n := range names {
		if err := writeCpioEntry(w, ino, n, a.entries[n]); err != nil {
			return err
		}
		ino++
	}
	return writeCpioEntry(w, 0, "TRAILER!!!", cpioEntry{})
}

// writeCpioEntry writes one newc header ("070701" and thirteen 8-digit hex
// fields), the NUL-terminated name padded to 4 bytes, and the data padded to
// 4 bytes.
func writeCpioEntry(w io.Writer, ino uint32, name string, e cpioEntry) error {
	nlink := uint32(1)
	if e.mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.rmajor, e.rmin, len(name)+1, 0)
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	buf = append(buf, e.data...)
	buf = append(buf, make([]byte, pad4(len(e.data)))...)
	_, err := w.Write(buf)
	return err
}

func pad4(n int) int { return (4 - n%4) % 4 }
