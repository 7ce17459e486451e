// Package vdisk holds the types every virtual disk format of imagefmt shares:
// the Image interface, the allocation map and the errors. It is a leaf package
// so that format packages (qcow2, vmdk, vhd, vhdx, raw) and imagefmt, which
// dispatches to them, can both use it without an import cycle. Users should
// import imagefmt, which re-exports these names.
package vdisk

import (
	"errors"
	"fmt"
	"io"
)

// Image is an open virtual disk: the bytes the guest sees, read-only.
//
// ReadAt follows io.ReaderAt exactly: a read that ends at or past Size returns
// the bytes up to Size and io.EOF. Implementations are safe for concurrent use
// by several goroutines.
type Image interface {
	io.ReaderAt
	io.Closer

	// Size is the virtual size in bytes.
	Size() int64

	// Info describes the image and its backing chain.
	Info() *Info

	// Extents reports the allocation of [off, off+length) as a sorted,
	// contiguous, non-overlapping list of extents that covers exactly that
	// range (clamped to Size). Adjacent extents of the same kind and layer
	// are merged. It is a view of the whole chain: an extent of kind Data or
	// Zero names the layer that holds it; Unallocated means no layer does
	// (the guest reads zeros).
	Extents(off, length int64) ([]Extent, error)
}

// ExtentKind says what backs a range of the virtual disk.
type ExtentKind uint8

const (
	// Unallocated ranges are stored nowhere in the chain and read as zeros.
	Unallocated ExtentKind = iota
	// Zero ranges are recorded as zero by some layer (qcow2 zero clusters,
	// VHDX PAYLOAD_BLOCK_ZERO) and read as zeros.
	Zero
	// Data ranges are stored in some layer (possibly as zero bytes).
	Data
)

func (k ExtentKind) String() string {
	switch k {
	case Unallocated:
		return "unallocated"
	case Zero:
		return "zero"
	case Data:
		return "data"
	}
	return fmt.Sprintf("ExtentKind(%d)", k)
}

// MarshalText makes extents readable in --json output.
func (k ExtentKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Extent is one range of the allocation map.
type Extent struct {
	Off  int64      `json:"offset"`
	Len  int64      `json:"length"`
	Kind ExtentKind `json:"kind"`
	// Layer is the index in the backing chain that holds the range: 0 is the
	// image that was opened, 1 its backing file, and so on. It is -1 for
	// Unallocated extents.
	Layer int `json:"layer"`
}

// Info describes an image for `vmmount info` and for callers that need to
// know the layout (backup chains, converters). Fields that do not apply to a
// format are left zero.
type Info struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`              // "raw", "qcow2", "vmdk", "vhd", "vhdx"
	Subformat   string `json:"subformat,omitempty"` // e.g. "monolithicSparse", "dynamic"
	Version     int    `json:"version,omitempty"`   // qcow2 version
	VirtualSize int64  `json:"virtual_size"`
	// ClusterSize is the allocation unit (qcow2 cluster, VMDK grain, VHD/VHDX
	// block).
	ClusterSize int64 `json:"cluster_size,omitempty"`
	// SubclusterSize is set for qcow2 images with extended L2 entries.
	SubclusterSize int64  `json:"subcluster_size,omitempty"`
	Compression    string `json:"compression,omitempty"` // "zlib", "zstd"
	// AllocatedBytes is the space the image file takes on the host.
	AllocatedBytes int64 `json:"allocated_bytes"`
	// FileSize is the host file's length.
	FileSize int64 `json:"file_size"`

	BackingFilename string `json:"backing_filename,omitempty"` // as written in the image
	BackingFormat   string `json:"backing_format,omitempty"`
	// Backing is the opened backing image's Info, nil at the end of the chain.
	Backing *Info `json:"backing,omitempty"`

	DataFile     string     `json:"data_file,omitempty"` // qcow2 external data file
	DataFileRaw  bool       `json:"data_file_raw,omitempty"`
	Snapshots    []Snapshot `json:"snapshots,omitempty"`
	Dirty        bool       `json:"dirty,omitempty"` // qcow2 lazy refcounts dirty bit
	Corrupt      bool       `json:"corrupt,omitempty"`
	ExtraFiles   []string   `json:"extra_files,omitempty"` // VMDK extents, split files
	UUID         string     `json:"uuid,omitempty"`
	ParentUUID   string     `json:"parent_uuid,omitempty"`
	Warnings     []string   `json:"warnings,omitempty"`
	BitmapNames  []string   `json:"bitmaps,omitempty"` // qcow2 persistent dirty bitmaps
	LogicalBlock int        `json:"logical_sector_size,omitempty"`
}

// Snapshot is an internal snapshot recorded in an image (qcow2). vmmount
// lists them; the active state is what it reads.
type Snapshot struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	VMState  int64  `json:"vm_state_size"`
	DateSec  int64  `json:"date_sec"`
	DateNsec int64  `json:"date_nsec"`
	VMClock  int64  `json:"vm_clock_nsec"`
	DiskSize int64  `json:"disk_size,omitempty"`
}

// Chain returns the Info of every layer, the opened image first.
func (i *Info) Chain() []*Info {
	var out []*Info
	for p := i; p != nil; p = p.Backing {
		out = append(out, p)
	}
	return out
}

// Errors. Use errors.Is to test for them; the concrete error carries where.
var (
	// ErrFormat means the bytes do not follow the format's specification.
	ErrFormat = errors.New("invalid image")
	// ErrUnsupported means a valid image uses something vmmount does not
	// handle (encryption, an unknown incompatible feature, a variant).
	ErrUnsupported = errors.New("unsupported image feature")
	// ErrBackingLoop means a backing chain refers back to itself.
	ErrBackingLoop = errors.New("backing chain loop")
	// ErrBackingMissing means a backing file named by an image is not there.
	ErrBackingMissing = errors.New("backing file missing")
	// ErrReadOnly means a write was asked of an image opened read-only.
	ErrReadOnly = errors.New("image is read-only")
)

// FormatError reports malformed or unsupported image contents, naming the
// image, the byte offset in the image file where the problem is, and the
// offending value.
type FormatError struct {
	Image string // file name
	Off   int64  // byte offset in the image file, -1 if not applicable
	Msg   string
	Val   any   // the value read from disk, or nil
	Err   error // ErrFormat or ErrUnsupported (or another sentinel)
}

func (e *FormatError) Error() string {
	s := e.Image + ": "
	if e.Off >= 0 {
		s += fmt.Sprintf("at offset %d (0x%x): ", e.Off, e.Off)
	}
	s += e.Msg
	if e.Val != nil {
		s += fmt.Sprintf(" (%v)", e.Val)
	}
	return s
}

func (e *FormatError) Unwrap() error {
	if e.Err == nil {
		return ErrFormat
	}
	return e.Err
}

// Opener opens a backing file for a format package. imagefmt supplies it; it
// detects the format (or checks the one named by the image), follows the
// backing chain further, and rejects loops and over-deep chains. name is the
// backing file name as recorded in the child, already resolved against the
// child's directory; format may be empty.
type Opener func(name, format string) (Image, error)

// MaxChainDepth bounds backing chains (qemu uses 1000 too; deeper chains are
// certainly hostile).
const MaxChainDepth = 1000

// File is a host file (or a window into one) that a format package reads:
// the image file itself, a qcow2 external data file, a VMDK extent.
type File interface {
	io.ReaderAt
	io.Closer
	Size() int64
	Name() string
}

// OpenOptions are what imagefmt hands a format package's Open.
type OpenOptions struct {
	// Name is the image's file name, used in errors and to resolve relative
	// names of backing, data and extent files.
	Name string
	// OpenBacking opens a backing image. Nil means the image may not have
	// one: a backing file is then an error.
	OpenBacking Opener
	// OpenFile opens a file the image refers to (data file, extent) for
	// reading; the name is resolved against Name's directory already. Nil
	// refuses such references.
	OpenFile func(name string) (File, error)
	// NoBacking opens the image alone, ignoring its backing file: reads of
	// ranges the image does not hold return zeros (qemu-img's -U/"backing
	// unset" view). Used to inspect one layer of a chain.
	NoBacking bool
}
