package mount

import (
	"io"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Node is one kind of entry in the served tree: *Dir, *RawFile, *Text,
// *Symlink or *Volume.
type Node interface{ node() }

// Entry is a named node in a Dir.
type Entry struct {
	Name string
	Node Node
}

// Dir is a synthetic directory. Its entries are computed on first access
// (List) or given (Entries), then kept.
type Dir struct {
	Entries []Entry
	List    func() ([]Entry, error)
	Mtime   time.Time
}

// RawFile serves bytes from a ReaderAt (a whole disk, a volume).
type RawFile struct {
	R     io.ReaderAt
	Size  int64
	Mtime time.Time
}

// Text is a small file held in memory.
type Text struct {
	Data  []byte
	Mtime time.Time
}

// Symlink is a symbolic link.
type Symlink struct {
	Target string
	Mtime  time.Time
}

// Volume grafts a guest filesystem: Open is called once, on the first access
// of the directory, and its result (or error) is kept.
type Volume struct {
	// Name identifies the volume in error reports ("p1", "vda/p2").
	Name string
	Open func() (fsys.FileSystem, error)
}

func (*Dir) node()     {}
func (*RawFile) node() {}
func (*Text) node()    {}
func (*Symlink) node() {}
func (*Volume) node()  {}

// ErrorFileName is the file a volume that fails to open shows.
const ErrorFileName = "VMMOUNT-ERROR.txt"
