package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/raw"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/internal/qemulock"
)

// RW is an existing qcow2 image open for in-place reads and writes: what
// chain merges and file injection use. A write into a cluster the image
// does not own yet (unallocated, zero, compressed, or shared) allocates a
// new cluster at the end of the file, filled with what the guest saw there
// (the backing file, zeros, the decompressed cluster) plus the new bytes;
// a write into an owned cluster goes in place. Refcounts are kept exact and
// written through in an order that can only leak clusters if the process
// stops half way (see refcount_rw.go); `qemu-img check` finds the image
// clean after Close.
//
// Internal snapshots are kept intact: an L2 table or data cluster shared
// with a snapshot (copied flag clear, refcount above one) is copied before
// it is written, and the snapshot keeps the original.
//
// Images that need more than that are refused by name: dirty (lazy
// refcounts not written back) or corrupt ones, persistent dirty bitmaps
// (they would silently go stale), external data files, extended L2
// entries, refcounts narrower than 8 bits, encryption.
//
// RW is safe for concurrent use; calls are serialized.
type RW struct {
	mu   sync.Mutex
	name string
	f    *os.File
	img  *Image // read view of the file as opened: compressed clusters, backing chain
	hdr  *ParsedHeader
	cs   int64
	size int64
	end  int64 // allocation cursor: end of the file, cluster aligned

	l1    []uint64
	l1Off int64
	l2    map[int64][]uint64 // L2 tables by host offset, written through
	rc    *rwRefcounts
	// meta names the host clusters holding metadata, so a hostile L2
	// entry pointing at them is refused instead of written over.
	meta map[int64]string

	scratch []byte
	closed  bool
}

// RWOptions change how OpenRWWith opens an image.
type RWOptions struct {
	// OpenBacking opens the backing file (imagefmt passes its opener,
	// which knows every format). Nil opens qcow2 and raw backing files
	// directly.
	OpenBacking vdisk.Opener
}

// OpenRW opens the qcow2 image at path for reading and writing.
func OpenRW(path string) (*RW, error) { return OpenRWWith(path, RWOptions{}) }

// OpenRWWith is OpenRW with options.
func OpenRWWith(path string, opts RWOptions) (_ *RW, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err := lockForWrite(f, path); err != nil {
		return nil, err
	}
	rf, err := vdisk.OpenOSFile(path)
	if err != nil {
		return nil, err
	}
	open := opts.OpenBacking
	if open == nil {
		open = directOpener(map[string]bool{}, 0)
	}
	img, err := Open(rf, vdisk.OpenOptions{Name: path, OpenBacking: open})
	if err != nil {
		rf.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			img.Close()
		}
	}()
	h := img.Header()
	rw := &RW{name: path, f: f, img: img, hdr: h, cs: h.ClusterSize, size: h.VirtualSize,
		l2: map[int64][]uint64{}, meta: map[int64]string{}}
	if err := rw.refuse(); err != nil {
		return nil, err
	}
	rw.end = (rf.Size() + rw.cs - 1) &^ (rw.cs - 1)
	if rw.rc, err = newRWRefcounts(rw); err != nil {
		return nil, err
	}
	rw.l1Off = int64(h.L1TableOffset)
	rw.l1 = make([]uint64, h.L1Size)
	if h.L1Size > 0 {
		buf := make([]byte, int64(h.L1Size)*8)
		if err := readFull(f, buf, rw.l1Off); err != nil {
			return nil, rw.ioErr("L1 table", rw.l1Off, err)
		}
		for i := range rw.l1 {
			rw.l1[i] = binary.BigEndian.Uint64(buf[i*8:])
		}
	}
	rw.meta[0] = "header cluster"
	for c := rw.l1Off / rw.cs; c < (rw.l1Off+int64(h.L1Size)*8+rw.cs-1)/rw.cs; c++ {
		rw.meta[c] = "L1 table"
	}
	for c := range int64(h.RefcountTableClusters) {
		rw.meta[rw.rc.tableOff/rw.cs+c] = "refcount table"
	}
	for _, e := range rw.rc.table {
		if off := int64(e & RefcountTableOffsetMask); off != 0 {
			rw.meta[off/rw.cs] = "refcount block"
		}
	}
	for _, e := range rw.l1 {
		if off := int64(e & L1OffsetMask); off != 0 {
			rw.meta[off/rw.cs] = "L2 table"
		}
	}
	// Spec: an implementation may only write an image with autoclear
	// features it does not maintain after clearing their bits.
	if h.Version >= 3 && h.AutoclearFeatures != 0 {
		var zero [8]byte
		if _, err := f.WriteAt(zero[:], 88); err != nil {
			return nil, writeError(path, "header autoclear features", 88, err)
		}
	}
	return rw, nil
}

// refuse rejects images RW cannot write correctly, by name.
func (rw *RW) refuse() error {
	h := rw.hdr
	switch {
	case h.IncompatibleFeatures&IncompatDirty != 0:
		return unsupErr(rw.name, 72, h.IncompatibleFeatures, "image is dirty (lazy refcounts not written back); run `qemu-img check -r all` on it first")
	case h.IncompatibleFeatures&IncompatCorrupt != 0:
		return unsupErr(rw.name, 72, h.IncompatibleFeatures, "image is marked corrupt; repair it with `qemu-img check -r all` first")
	case h.HasDataFile:
		return unsupErr(rw.name, 72, h.IncompatibleFeatures, "in-place writes to images with an external data file are not supported")
	case h.ExtendedL2:
		return unsupErr(rw.name, 72, h.IncompatibleFeatures, "in-place writes to images with extended L2 entries (subclusters) are not supported")
	case h.Bitmaps != nil && h.Bitmaps.NbBitmaps > 0:
		return unsupErr(rw.name, -1, h.Bitmaps.NbBitmaps, "image has persistent dirty bitmaps, which in-place writes would leave stale; remove them (qemu-img bitmap --remove) first")
	case h.CryptMethod != CryptNone:
		return unsupErr(rw.name, 32, h.CryptMethod, "encrypted images cannot be written")
	}
	return nil
}

// lockForWrite takes QEMU's image locks the way a QEMU writer does
// (package qemulock): consistent read and write used, write not shared. It
// refuses the image when another process uses the write permission or
// refuses to share it, as a running VM does, or another RW.
func lockForWrite(f *os.File, name string) error {
	if err := qemulock.Hold(f, qemulock.PermRead, qemulock.PermWrite, qemulock.UnshareWrite); err != nil {
		if errors.Is(err, qemulock.ErrUnsupported) {
			return nil // nothing to coordinate with
		}
		return fmt.Errorf("%s: image is in use (locked by a running QEMU or another writer): %w", name, err)
	}
	switch b, err := qemulock.Held(f, qemulock.PermWrite, qemulock.UnshareWrite); {
	case err != nil:
		return fmt.Errorf("%s: %w", name, err)
	case b != 0:
		return fmt.Errorf("%s: image is in use (a running QEMU or another writer holds its write lock)", name)
	}
	return nil
}

// directOpener opens qcow2 and raw backing files without imagefmt (which
// imports this package), with loop and depth checks.
func directOpener(seen map[string]bool, depth int) vdisk.Opener {
	return func(name, format string) (vdisk.Image, error) {
		if depth >= vdisk.MaxChainDepth {
			return nil, &vdisk.FormatError{Image: name, Off: -1, Msg: "backing chain too deep", Err: vdisk.ErrFormat}
		}
		f, err := vdisk.OpenOSFile(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: %v", vdisk.ErrBackingMissing, err)
			}
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		key := name
		if s, ok := st.Sys().(*unix.Stat_t); ok {
			key = fmt.Sprintf("%d:%d", s.Dev, s.Ino)
		}
		if seen[key] {
			f.Close()
			return nil, &vdisk.FormatError{Image: name, Off: -1, Msg: "backing chain refers back to this file", Err: vdisk.ErrBackingLoop}
		}
		seen[key] = true
		if format == "" {
			var magic [4]byte
			if n, _ := f.ReadAt(magic[:], 0); n == 4 && binary.BigEndian.Uint32(magic[:]) == Magic {
				format = "qcow2"
			} else {
				format = "raw"
			}
		}
		var img vdisk.Image
		switch format {
		case "qcow2":
			img, err = Open(f, vdisk.OpenOptions{Name: name, OpenBacking: directOpener(seen, depth+1)})
		case "raw":
			img, err = raw.Open(f, vdisk.OpenOptions{Name: name})
		default:
			err = &vdisk.FormatError{Image: name, Off: -1, Msg: "backing format " + format + " needs RWOptions.OpenBacking (imagefmt)", Err: vdisk.ErrUnsupported}
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		return img, nil
	}
}

// Size is the virtual size.
func (rw *RW) Size() int64 { return rw.size }

// Header returns the header as it was at open.
func (rw *RW) Header() *ParsedHeader { return rw.hdr }

func (rw *RW) ioErr(what string, off int64, err error) error {
	if err == io.ErrUnexpectedEOF {
		return fmtErr(rw.name, off, nil, "%s: file ends early (truncated image?)", what)
	}
	return fmt.Errorf("%s: %s at offset %d: %w", rw.name, what, off, err)
}

// ReadAt reads the guest's view, including writes made through rw.
func (rw *RW) ReadAt(p []byte, off int64) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.closed {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", rw.name)
	}
	if off >= rw.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), rw.size-off)
	for done := int64(0); done < n; {
		pos := off + done
		in := pos % rw.cs
		k := min(rw.cs-in, n-done)
		e, _, err := rw.entry(pos/rw.cs, false)
		if err != nil {
			return int(done), err
		}
		if err := rw.readCluster(p[done:done+k], pos, e); err != nil {
			return int(done), err
		}
		done += k
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// WriteAt writes p at guest offset off; the virtual size does not change.
func (rw *RW) WriteAt(p []byte, off int64) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.closed {
		return 0, os.ErrClosed
	}
	if off < 0 || off > rw.size || int64(len(p)) > rw.size-off {
		return 0, fmt.Errorf("%s: write of %d bytes at %d outside the %d-byte disk", rw.name, len(p), off, rw.size)
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		in := pos % rw.cs
		k := int(min(rw.cs-in, int64(len(p)-done)))
		if err := rw.writeCluster(pos/rw.cs, in, p[done:done+k]); err != nil {
			return done, err
		}
		done += k
	}
	return len(p), nil
}

// Flush makes every write so far durable.
func (rw *RW) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.closed {
		return os.ErrClosed
	}
	return rw.f.Sync()
}

// Close flushes and closes the image and its backing chain.
func (rw *RW) Close() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.closed {
		return nil
	}
	rw.closed = true
	err := rw.f.Sync()
	if cerr := rw.f.Close(); err == nil {
		err = cerr
	}
	if cerr := rw.img.Close(); err == nil {
		err = cerr
	}
	return err
}
