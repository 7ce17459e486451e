package fsread

import (
	"io/fs"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Re-exported from fsread/fsys, so users need one import.
type (
	FileSystem   = fsys.FileSystem
	File         = fsys.File
	Stat         = fsys.Stat
	DirEntry     = fsys.DirEntry
	Info         = fsys.Info
	Range        = fsys.Range
	FS           = fsys.FS
	CorruptError = fsys.CorruptError
)

var (
	ErrCorrupt     = fsys.ErrCorrupt
	ErrUnsupported = fsys.ErrUnsupported
	ErrNoXattr     = fsys.ErrNoXattr
	ErrNotDir      = fsys.ErrNotDir
	ErrIsDir       = fsys.ErrIsDir
	ErrNotSymlink  = fsys.ErrNotSymlink

	errNotExist = fs.ErrNotExist
)

// NewFS returns the io/fs view of a filesystem.
func NewFS(f FileSystem) FS { return fsys.NewFS(f) }
