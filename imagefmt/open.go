package imagefmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/imagefmt/raw"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/imagefmt/vhd"
	"github.com/vmmount/vmmount/imagefmt/vhdx"
	"github.com/vmmount/vmmount/imagefmt/vmdk"
)

// Re-exported shared types; see package vdisk.
type (
	Image       = vdisk.Image
	Info        = vdisk.Info
	Extent      = vdisk.Extent
	ExtentKind  = vdisk.ExtentKind
	FormatError = vdisk.FormatError
	Snapshot    = vdisk.Snapshot
)

const (
	Unallocated = vdisk.Unallocated
	Zero        = vdisk.Zero
	Data        = vdisk.Data
)

var (
	ErrFormat         = vdisk.ErrFormat
	ErrUnsupported    = vdisk.ErrUnsupported
	ErrBackingLoop    = vdisk.ErrBackingLoop
	ErrBackingMissing = vdisk.ErrBackingMissing
)

// Formats vmmount reads, as Detect names them.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatVMDK  = "vmdk"
	FormatVHD   = "vpc" // qemu's name for VHD
	FormatVHDX  = "vhdx"
)

// Options change how Open reads an image.
type Options struct {
	// Format forces a format instead of detecting it ("raw", "qcow2",
	// "vmdk", "vpc" or "vhd", "vhdx").
	Format string
	// NoBacking opens only the named image, not its backing chain; ranges
	// it does not hold read as zeros.
	NoBacking bool
}

// Open opens a disk image read-only, detecting its format from its content
// and following its backing chain.
func Open(name string) (Image, error) { return OpenWith(name, Options{}) }

// OpenWith is Open with options.
func OpenWith(name string, opts Options) (Image, error) {
	o := &opener{seen: map[string]bool{}, noBacking: opts.NoBacking}
	return o.open(name, opts.Format, 0)
}

type opener struct {
	seen      map[string]bool // identity of every file in the chain so far
	noBacking bool
}

func fileKey(f *vdisk.OSFile) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	return identity(st), nil
}

func (o *opener) open(name, format string, depth int) (Image, error) {
	if depth > vdisk.MaxChainDepth {
		return nil, &FormatError{Image: name, Off: -1, Msg: fmt.Sprintf("backing chain deeper than %d", vdisk.MaxChainDepth), Err: ErrFormat}
	}
	f, err := vdisk.OpenOSFile(name)
	if err != nil {
		if depth > 0 && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %v", ErrBackingMissing, err)
		}
		return nil, err
	}
	key, err := fileKey(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if o.seen[key] {
		f.Close()
		return nil, &FormatError{Image: name, Off: -1, Msg: "backing chain refers back to this file", Err: ErrBackingLoop}
	}
	o.seen[key] = true

	if format == "" {
		format, err = Detect(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	vopts := vdisk.OpenOptions{
		Name:      name,
		NoBacking: o.noBacking,
		OpenFile: func(n string) (vdisk.File, error) {
			return vdisk.OpenOSFile(n)
		},
	}
	if !o.noBacking {
		vopts.OpenBacking = func(bname, bformat string) (vdisk.Image, error) {
			return o.open(bname, bformat, depth+1)
		}
	}
	var img Image
	switch format {
	case FormatRaw:
		img, err = raw.Open(f, vopts)
	case FormatQcow2:
		img, err = qcow2.Open(f, vopts)
	case FormatVMDK:
		img, err = vmdk.Open(f, vopts)
	case FormatVHD, "vhd":
		img, err = vhd.Open(f, vopts)
	case FormatVHDX:
		img, err = vhdx.Open(f, vopts)
	default:
		err = &FormatError{Image: name, Off: -1, Msg: "unknown format " + format, Err: ErrUnsupported}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

// Detect names the format of an image from its content: the magic at the
// start (qcow2, VMDK sparse and descriptor, VHDX, dynamic VHD) or the VHD
// footer at the end (fixed VHD). Anything else is raw.
func Detect(r vdisk.File) (string, error) {
	var hdr [512]byte
	n, err := r.ReadAt(hdr[:], 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	h := hdr[:n]
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")):
		return FormatQcow2, nil
	case bytes.HasPrefix(h, []byte("KDMV")), bytes.HasPrefix(h, []byte("COWD")):
		return FormatVMDK, nil
	case bytes.HasPrefix(h, []byte("vhdxfile")):
		return FormatVHDX, nil
	case bytes.HasPrefix(h, []byte("conectix")):
		return FormatVHD, nil
	case isVMDKDescriptor(h):
		return FormatVMDK, nil
	}
	if size := r.Size(); size >= 512 {
		var foot [512]byte
		if _, err := r.ReadAt(foot[:], size-512); err == nil && bytes.HasPrefix(foot[:], []byte("conectix")) {
			return FormatVHD, nil
		}
	}
	return FormatRaw, nil
}

func isVMDKDescriptor(h []byte) bool {
	// A text descriptor starts with a comment line naming it, or directly
	// with "version=" after blank lines (qemu's vmdk_probe accepts both).
	return bytes.Contains(h, []byte("# Disk DescriptorFile")) ||
		(bytes.Contains(h, []byte("createType=")) && bytes.Contains(h, []byte("version=")))
}
