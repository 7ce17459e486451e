package testimages

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"
	"unicode/utf8"
)

// Manifest is what a reader shows of a filesystem tree: one Entry per
// name, sorted by path. An oracle manifest is made by ScanDir over a mount
// by an independent reader (kernel, ntfs-3g) or over a fixture's source
// tree, and compared with ScanFS over vmmount's reader by Compare.
type Manifest struct {
	// Source says how the manifest was made, for messages.
	Source  string  `json:"source,omitempty"`
	Entries []Entry `json:"entries"`
}

// Entry is one name of the tree. Fields a reader does not have are zero
// (Btime) and are then not compared.
type Entry struct {
	// Path is slash-separated and relative to the root, "." for the root.
	Path string `json:"path"`
	// Mode is st_mode: S_IFMT type bits and permission bits.
	Mode  uint32 `json:"mode"`
	Uid   uint32 `json:"uid"`
	Gid   uint32 `json:"gid"`
	Size  int64  `json:"size"`
	Nlink uint32 `json:"nlink"`
	// Ino groups hardlinks; raw numbers differ between readers (ntfs-3g
	// and an MFT reader) and are never compared, only the groups.
	Ino    uint64 `json:"ino"`
	Rdev   uint64 `json:"rdev,omitempty"`
	Blocks int64  `json:"blocks"` // 512-byte units
	// SHA256 is the hex digest of a regular file's content.
	SHA256 string `json:"sha256,omitempty"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
	// Xattrs maps each extended attribute name to XattrValue(value).
	Xattrs map[string]string `json:"xattrs,omitempty"`
	Atime  time.Time         `json:"atime"`
	Mtime  time.Time         `json:"mtime"`
	Ctime  time.Time         `json:"ctime"`
	Btime  time.Time         `json:"btime,omitzero"`
	// Err is set when the reader failed on this entry; the scan went on.
	Err string `json:"error,omitempty"`
}

// Type returns the entry's file type as a word: file, dir, symlink, fifo,
// socket, char, block, or a number for garbage.
func (e *Entry) Type() string { return typeName(e.Mode) }

func typeName(mode uint32) string {
	switch mode & 0o170000 {
	case 0o100000:
		return "file"
	case 0o040000:
		return "dir"
	case 0o120000:
		return "symlink"
	case 0o010000:
		return "fifo"
	case 0o140000:
		return "socket"
	case 0o020000:
		return "char"
	case 0o060000:
		return "block"
	}
	return fmt.Sprintf("type%#o", mode&0o170000)
}

// IsDir says whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.Mode&0o170000 == 0o040000 }

// XattrValue is the manifest's encoding of an xattr value, readable in
// diffs and unambiguous: "text:<value>" for short valid UTF-8 without
// control characters, "hex:<hex>" for other short values, and
// "sha256:<hex>/<length>" above 256 bytes.
func XattrValue(v []byte) string {
	if len(v) > 256 {
		return fmt.Sprintf("sha256:%s/%d", sha256Hex(v), len(v))
	}
	if utf8.Valid(v) && printable(v) {
		return "text:" + string(v)
	}
	return "hex:" + hex.EncodeToString(v)
}

func printable(v []byte) bool {
	for _, r := range string(v) {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Get returns the entry at path, or nil.
func (m *Manifest) Get(path string) *Entry {
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].Path >= path })
	if i < len(m.Entries) && m.Entries[i].Path == path {
		return &m.Entries[i]
	}
	return nil
}

// Sort orders the entries by path, as Get needs.
func (m *Manifest) Sort() {
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
}

// Remove drops path and everything under it; it reports whether anything
// was removed.
func (m *Manifest) Remove(path string) bool {
	out := m.Entries[:0]
	for _, e := range m.Entries {
		if e.Path == path || (len(e.Path) > len(path) && e.Path[:len(path)] == path && e.Path[len(path)] == '/') {
			continue
		}
		out = append(out, e)
	}
	removed := len(out) != len(m.Entries)
	m.Entries = out
	return removed
}

// HardlinkGroups returns the sets of non-directory paths that share an
// inode, each sorted, ordered by their first path.
func (m *Manifest) HardlinkGroups() [][]string {
	byIno := map[uint64][]string{}
	for _, e := range m.Entries {
		if !e.IsDir() && e.Err == "" {
			byIno[e.Ino] = append(byIno[e.Ino], e.Path)
		}
	}
	var out [][]string
	for _, g := range byIno {
		if len(g) > 1 {
			sort.Strings(g)
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// WriteJSON stores the manifest, so an oracle is cached next to its image
// and the independent reader is needed only when the fixture is built.
func (m *Manifest) WriteJSON(name string) error {
	data, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(name, append(data, '\n'), 0o644)
}

// ReadJSON loads a manifest written by WriteJSON.
func ReadJSON(name string) (*Manifest, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	m := new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	m.Sort()
	return m, nil
}
