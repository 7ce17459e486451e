package fsread

import (
	"io"

	"github.com/vmmount/vmmount/fsread/ext"
	"github.com/vmmount/vmmount/fsread/fat"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/fsread/ntfs"
)

// openOptions are what a filesystem reader gets from the volume it opens.
type openOptions struct {
	// Name of the volume in errors ("p1", "vda/p2", "vg0-root").
	Name string
	// MountPoint is the absolute path the volume is served at, "" if none.
	MountPoint      string
	NoJournalReplay bool
}

type opener func(r io.ReaderAt, size int64, o openOptions) (fsys.FileSystem, error)

// openers maps a probed type to the reader that opens it: one line per
// filesystem package. Types missing here are listed as "not readable".
var openers = map[string]opener{
	TypeExt2: openExt,
	TypeExt3: openExt,
	TypeExt4: openExt,
	TypeNTFS: func(r io.ReaderAt, size int64, o openOptions) (fsys.FileSystem, error) {
		return ntfs.Open(r, size, ntfs.Options{Name: o.Name, MountPoint: o.MountPoint})
	},
	TypeVFAT: func(r io.ReaderAt, size int64, o openOptions) (fsys.FileSystem, error) {
		return fat.Open(r, size, fat.Options{Name: o.Name})
	},
}

func openExt(r io.ReaderAt, size int64, o openOptions) (fsys.FileSystem, error) {
	return ext.Open(r, size, ext.Options{Name: o.Name, NoJournalReplay: o.NoJournalReplay})
}

// unreadable says why a detected type has no reader.
var unreadable = map[string]string{
	TypeXFS:     "XFS is not readable yet",
	TypeBtrfs:   "btrfs is not readable yet",
	TypeExFAT:   "exFAT is not readable yet",
	TypeJBD:     "an external ext3/ext4 journal holds no files",
	TypeSwap:    "swap space holds no files",
	TypeLUKS:    "LUKS encrypted volume: vmmount does not decrypt",
	TypeMDRaid:  "md RAID member: md arrays are not assembled yet",
	TypeLVM2PV:  "LVM physical volume",
	TypeUnknown: "no filesystem vmmount recognizes",
}
