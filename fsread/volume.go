package fsread

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Volume kinds.
const (
	KindPartition = "partition"
	KindDisk      = "disk" // the whole disk, no partition table
	KindLV        = "lv"
)

// Volume is one readable unit of a VM's disks: a partition, a whole disk
// without partition table, or an LVM logical volume. Its Name is the first
// component of paths below it; Path is where it is in the Set's namespace.
type Volume struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Kind string `json:"kind"`
	// Disk is the disk holding the volume; empty for LVs, which may span
	// disks (see LV.PVs).
	Disk string `json:"disk,omitempty"`
	// Offset is the byte offset of a partition from the start of its disk
	// (0 for a whole disk and for LVs).
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// FS is what the volume holds (ext2, ext3, ext4, ntfs, vfat, xfs,
	// btrfs, swap, luks, lvm2-pv, ..., unknown), from superblock magics.
	FSType    string `json:"fs"`
	FSVersion string `json:"fs_version,omitempty"` // "FAT32", LUKS "2", md "1.2"
	Label     string `json:"label"`
	UUID      string `json:"uuid"`

	Partition *PartitionInfo `json:"partition,omitempty"`
	LV        *LVInfo        `json:"lv,omitempty"`
	PV        *PVInfo        `json:"pv,omitempty"`

	// Warnings are conditions that did not stop reading (a partition
	// truncated at the end of the disk).
	Warnings []string `json:"warnings,omitempty"`

	r      io.ReaderAt
	reason error // known before opening: why FS cannot work
	opts   openOptions

	once   sync.Once
	fs     fsys.FileSystem
	fsErr  error
	closed atomic.Bool
}

// PartitionInfo is the partition table entry of a partition volume.
type PartitionInfo struct {
	Number   int    `json:"number"`
	Scheme   string `json:"scheme"` // "gpt", "dos"
	Type     string `json:"type"`   // "0x83" or a type GUID
	TypeName string `json:"type_name,omitempty"`
	Name     string `json:"name,omitempty"` // GPT partition name
	UUID     string `json:"uuid,omitempty"` // PARTUUID
	Bootable bool   `json:"bootable,omitempty"`
	Logical  bool   `json:"logical,omitempty"`
}

// LVInfo describes an LVM logical volume.
type LVInfo struct {
	VG     string   `json:"vg"`
	LV     string   `json:"lv"`
	VGUUID string   `json:"vg_uuid"`
	UUID   string   `json:"uuid"`
	Type   string   `json:"type"` // "linear", "striped", "raid1", "thin", ...
	PVs    []string `json:"pvs"`  // paths of the volumes holding its PVs
}

// PVInfo is set on a volume that is an LVM physical volume.
type PVInfo struct {
	UUID string `json:"uuid"`
	VG   string `json:"vg,omitempty"`
	// LVs are the paths of the VG's visible LVs.
	LVs []string `json:"lvs,omitempty"`
}

// ReaderAt returns the volume's bytes: a window of its disk, or the LV
// mapping. Reads past Size return io.EOF. Nil when the volume cannot be
// read at all (an LV with a missing PV).
func (v *Volume) ReaderAt() io.ReaderAt { return v.r }

// Err says why the volume's filesystem cannot be opened, as far as known
// without opening it: a type vmmount does not read (wrapping
// fsys.ErrUnsupported), an LV whose PV is missing. Nil does not promise FS
// succeeds.
func (v *Volume) Err() error { return v.reason }

// Readable says whether FS will try to open a filesystem.
func (v *Volume) Readable() bool { return v.reason == nil }

// FS opens the volume's filesystem on first use and returns it, or the
// error, to every later caller. It is safe for concurrent use.
func (v *Volume) FS() (fsys.FileSystem, error) {
	if v.closed.Load() {
		return nil, errClosed
	}
	v.once.Do(func() {
		if v.reason != nil {
			v.fsErr = v.reason
			return
		}
		open := openers[v.FSType]
		if open == nil {
			v.fsErr = fmt.Errorf("%s: %s: %w", v.Path, v.FSType, fsys.ErrUnsupported)
			return
		}
		fs, err := open(v.r, v.Size, v.opts)
		if err != nil {
			v.fsErr = fmt.Errorf("%s: %w", v.Path, err)
			return
		}
		v.fs = fs
	})
	return v.fs, v.fsErr
}

// errClosed is what FS returns after the Set was closed.
var errClosed = errors.New("volume set closed")

// close closes the filesystem if FS opened one, and makes later FS calls
// fail.
func (v *Volume) close() error {
	v.closed.Store(true)
	v.once.Do(func() { v.fsErr = errClosed })
	if v.fs != nil {
		return v.fs.Close()
	}
	return nil
}

// MarshalJSON adds "readable" and "error" to the fields.
func (v *Volume) MarshalJSON() ([]byte, error) {
	type plain Volume
	out := struct {
		*plain
		Readable bool   `json:"readable"`
		Error    string `json:"error,omitempty"`
	}{plain: (*plain)(v), Readable: v.reason == nil}
	if v.reason != nil {
		out.Error = v.reason.Error()
	}
	return json.Marshal(out)
}

// UnreadableError says why a volume holds nothing vmmount can read: a
// type it does not read, or no filesystem. It wraps fsys.ErrUnsupported.
type UnreadableError struct {
	Path   string
	Reason string
}

func (e *UnreadableError) Error() string { return e.Path + ": " + e.Reason }
func (e *UnreadableError) Unwrap() error { return fsys.ErrUnsupported }

func notReadable(path, format string, args ...any) error {
	return &UnreadableError{Path: path, Reason: fmt.Sprintf(format, args...)}
}
