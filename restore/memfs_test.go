package restore

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// memFS is a tiny fsys.FileSystem built in tests, able to return what no
// real reader would: any name, the same name twice, directory loops.
type memFS struct {
	nodes map[uint64]*memNode
	next  uint64
}

type memNode struct {
	st      fsys.Stat
	ents    []fsys.DirEntry
	data    []byte
	extents []fsys.Range
	target  string
	xattrs  map[string][]byte
}

var memTime = time.Date(2020, 3, 4, 5, 6, 7, 123456789, time.UTC)

func newMemFS() *memFS {
	m := &memFS{nodes: map[uint64]*memNode{}, next: 2}
	m.nodes[1] = &memNode{st: fsys.Stat{Ino: 1, Mode: fsys.S_IFDIR | 0o755, Nlink: 2, Atime: memTime, Mtime: memTime}}
	return m
}

func (m *memFS) add(dir uint64, name string, n *memNode) uint64 {
	ino := m.next
	m.next++
	n.st.Ino = ino
	if n.st.Nlink == 0 {
		n.st.Nlink = 1
	}
	if n.st.Mtime.IsZero() {
		n.st.Atime, n.st.Mtime = memTime, memTime
	}
	n.st.Size = int64(len(n.data))
	if n.target != "" {
		n.st.Size = int64(len(n.target))
	}
	m.nodes[ino] = n
	m.link(dir, name, ino)
	return ino
}

func (m *memFS) link(dir uint64, name string, ino uint64) {
	d := m.nodes[dir]
	d.ents = append(d.ents, fsys.DirEntry{Name: name, Ino: ino, Type: fsys.UnixMode(m.nodes[ino].st.Mode).Type()})
}

func (m *memFS) file(dir uint64, name, content string) uint64 {
	return m.add(dir, name, &memNode{st: fsys.Stat{Mode: fsys.S_IFREG | 0o644}, data: []byte(content)})
}

func (m *memFS) dir(dir uint64, name string) uint64 {
	return m.add(dir, name, &memNode{st: fsys.Stat{Mode: fsys.S_IFDIR | 0o755, Nlink: 2}})
}

func (m *memFS) symlink(dir uint64, name, target string) uint64 {
	return m.add(dir, name, &memNode{st: fsys.Stat{Mode: fsys.S_IFLNK | 0o777}, target: target})
}

func (m *memFS) node(ino uint64) (*memNode, error) {
	n := m.nodes[ino]
	if n == nil {
		return nil, fmt.Errorf("memfs: inode %d: %w", ino, fs.ErrNotExist)
	}
	return n, nil
}

func (m *memFS) Root() uint64 { return 1 }

func (m *memFS) Stat(ino uint64) (*fsys.Stat, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	st := n.st
	return &st, nil
}

func (m *memFS) Lookup(dir uint64, name string) (uint64, error) {
	n, err := m.node(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range n.ents {
		if e.Name == name {
			return e.Ino, nil
		}
	}
	return 0, fmt.Errorf("memfs: %s: %w", name, fs.ErrNotExist)
}

func (m *memFS) ReadDir(dir uint64) ([]fsys.DirEntry, error) {
	n, err := m.node(dir)
	if err != nil {
		return nil, err
	}
	return append([]fsys.DirEntry(nil), n.ents...), nil
}

func (m *memFS) Readlink(ino uint64) (string, error) {
	n, err := m.node(ino)
	if err != nil {
		return "", err
	}
	return n.target, nil
}

func (m *memFS) Open(ino uint64) (fsys.File, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	return &memFile{bytes.NewReader(n.data), n}, nil
}

type memFile struct {
	*bytes.Reader
	n *memNode
}

func (f *memFile) Extents() ([]fsys.Range, error) { return f.n.extents, nil }

var _ io.ReaderAt = (*memFile)(nil)

func (m *memFS) Xattrs(ino uint64) ([]string, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range n.xattrs {
		out = append(out, k)
	}
	return out, nil
}

func (m *memFS) Xattr(ino uint64, name string) ([]byte, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	v, ok := n.xattrs[name]
	if !ok {
		return nil, fsys.ErrNoXattr
	}
	return v, nil
}

func (m *memFS) Info() *fsys.Info   { return &fsys.Info{Type: "memfs"} }
func (m *memFS) Warnings() []string { return nil }
func (m *memFS) Close() error       { return nil }
func (m *memFS) item(rel string) []Item {
	return []Item{{Guest: "/m", FS: m, Ino: 1, Rel: []string{rel}}}
}

func fsys_Reg() fsys.Stat { return fsys.Stat{Mode: fsys.S_IFREG | 0o644} }
