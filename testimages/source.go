package testimages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// treeVersion is bumped whenever RichTree's output changes.
const treeVersion = "t1"

// SourceTree returns a RichTree built with o and cached under name: the
// tree's directory and the manifest ScanDir took right after building it
// (tools that copy the tree, like mkfs -d, move its atimes; the manifest
// keeps the times RichTree set).
func SourceTree(name string, o TreeOptions) (string, *Manifest, error) {
	key, _ := json.Marshal(o)
	sum := sha256.Sum256(key)
	dir, err := Cached(name, treeVersion+"-"+hex.EncodeToString(sum[:4]), func(dir string) error {
		tree := filepath.Join(dir, "tree")
		if err := os.Mkdir(tree, 0o755); err != nil {
			return err
		}
		if err := RichTree(tree, o); err != nil {
			return err
		}
		m, err := ScanDir(tree)
		if err != nil {
			return err
		}
		m.Source = "RichTree " + string(key)
		return m.WriteJSON(filepath.Join(dir, "source.json"))
	})
	if err != nil {
		return "", nil, err
	}
	m, err := ReadJSON(filepath.Join(dir, "source.json"))
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, "tree"), m, nil
}

// Retime sets the atime and mtime of every entry of m under root (a copy
// of the tree m describes, e.g. the mount of an image made with mkfs -d,
// which keeps whole seconds only), without following symlinks. Entries
// missing under root are skipped.
func Retime(root string, m *Manifest) error {
	for i := len(m.Entries) - 1; i >= 0; i-- { // children before parents
		e := &m.Entries[i]
		ts := []unix.Timespec{timespec(e.Atime), timespec(e.Mtime)}
		p := filepath.Join(root, filepath.FromSlash(e.Path))
		err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "utimensat", Path: p, Err: err}
		}
	}
	return nil
}

// Pattern is n deterministic, incompressible bytes that depend on seed
// (xorshift): file contents tests can regenerate to compare.
func Pattern(n, seed int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
