package lvm

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// maxMetadataText bounds one copy of the text metadata. LVM's default
// metadata area is 1 MiB and a copy may use at most half of it; VGs with
// thousands of LVs reach a few MiB with --metadatasize.
const maxMetadataText = 32 << 20

// ErrNotPV means the device carries no LVM2 label.
var ErrNotPV = errors.New("not an LVM2 physical volume")

// PV is a physical volume: a device with an LVM2 label.
type PV struct {
	// Device names the device the PV was found on, for messages
	// ("vda/p2").
	Device string
	// UUID is the PV UUID in its displayed form (6-4-4-4-4-4-6).
	UUID string
	// DevSize is the size the PV header records (the device size when the
	// PV was created or last resized).
	DevSize       uint64
	LabelSector   int
	DataAreas     []DiskLocn
	MetadataAreas []DiskLocn
	// Metadata is the newest valid copy of the text metadata found in this
	// PV's metadata areas; nil when it has none (pvcreate
	// --metadatacopies 0, or metadata areas all ignored or damaged).
	Metadata *Metadata
	// Warnings are damaged metadata areas; an error here does not stop the
	// PV from being used with metadata found on other PVs.
	Warnings []string

	r    io.ReaderAt
	size int64
}

// Size is the size of the device the PV was found on.
func (pv *PV) Size() int64 { return pv.size }

// ReadPV reads the LVM2 label, PV header and metadata areas of a device of
// size bytes. It returns ErrNotPV when no sector of the first four has a
// LABELONE label, and a *fsys.CorruptError when a label is there but
// damaged. device names the device in messages.
func ReadPV(r io.ReaderAt, size int64, device string) (*PV, error) {
	buf := make([]byte, sectorSize)
	var firstErr error
	for s := 0; s < labelScanSects; s++ {
		off := int64(s) * sectorSize
		if off+sectorSize > size {
			break
		}
		if err := readFull(r, buf, off); err != nil {
			return nil, fmt.Errorf("%s: reading LVM label sector %d: %w", device, s, err)
		}
		if !bytes.Equal(buf[:8], []byte(labelID)) {
			continue
		}
		pv, err := parseLabel(buf, s, device)
		if err != nil {
			// LVM also skips a label that fails its checks
			// (label.c _find_lvm_header) and looks further.
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		pv.r, pv.size = r, size
		pv.readMetadataAreas()
		return pv, nil
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, ErrNotPV
}

func parseLabel(b []byte, sector int, device string) (*PV, error) {
	off := int64(sector) * sectorSize
	bad := func(format string, args ...any) error { return corrupt(device+": LVM label", off, format, args...) }
	lh := decode[LabelHeader](b)
	if lh.Sector != uint64(sector) {
		return nil, bad("label says it is in sector %d", lh.Sector)
	}
	if got := calcCRC(initialCRC, b[20:]); got != lh.CRC {
		return nil, bad("label checksum is %#08x, label says %#08x", got, lh.CRC)
	}
	if !bytes.Equal(lh.TypeName[:], []byte(labelType)) {
		return nil, bad("label type %q is not %q", lh.TypeName[:], labelType)
	}
	if lh.Offset < labelHeaderSize || int(lh.Offset)+pvHeaderFixedSize > sectorSize {
		return nil, bad("PV header offset %d outside the label sector", lh.Offset)
	}
	h := b[lh.Offset:]
	fixed := decode[PVHeaderFixed](h)
	for _, c := range fixed.UUID {
		if !isUUIDChar(c) {
			return nil, bad("PV UUID %q has invalid characters", fixed.UUID[:])
		}
	}
	pv := &PV{Device: device, UUID: formatUUID(string(fixed.UUID[:])), DevSize: fixed.DevSize, LabelSector: sector}
	rest := h[pvHeaderFixedSize:]
	var ok bool
	if pv.DataAreas, rest, ok = readLocns(rest); !ok {
		return nil, bad("data area list runs past the label sector")
	}
	if pv.MetadataAreas, _, ok = readLocns(rest); !ok {
		return nil, bad("metadata area list runs past the label sector")
	}
	return pv, nil
}

// isUUIDChar reports the characters LVM uses in UUIDs (lib/uuid/uuid.c).
func isUUIDChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '!' || c == '#'
}

// readLocns reads a list of DiskLocn ended by a zero entry.
func readLocns(b []byte) ([]DiskLocn, []byte, bool) {
	var out []DiskLocn
	for len(b) >= diskLocnSize {
		l := decode[DiskLocn](b)
		b = b[diskLocnSize:]
		if l.Offset == 0 {
			return out, b, true
		}
		out = append(out, l)
	}
	return nil, nil, false
}

// readMetadataAreas reads every metadata area and keeps the newest valid
// text; damaged areas become warnings.
func (pv *PV) readMetadataAreas() {
	for i, a := range pv.MetadataAreas {
		md, err := pv.readMDA(a)
		if err != nil {
			pv.Warnings = append(pv.Warnings, fmt.Sprintf("metadata area %d: %v", i+1, err))
			continue
		}
		if md == nil {
			continue // ignored area
		}
		md.Source = fmt.Sprintf("%s (metadata area %d)", pv.Device, i+1)
		if pv.Metadata == nil || md.Seqno > pv.Metadata.Seqno {
			pv.Metadata = md
		}
	}
}

// readMDA reads the mda_header at area and the committed metadata text its
// first raw_locn points to (format-text.c _vg_read_raw_area), following the
// wrap of the circular buffer. It returns nil, nil for an ignored area.
func (pv *PV) readMDA(a DiskLocn) (*Metadata, error) {
	what := pv.Device + ": metadata area"
	if a.Offset > uint64(pv.size) || a.Size > uint64(pv.size)-a.Offset || a.Size < mdaHeaderSize {
		return nil, corrupt(what, -1, "area of %d bytes at byte %d does not fit the device (%d bytes)", a.Size, a.Offset, pv.size)
	}
	off := int64(a.Offset)
	h := make([]byte, mdaHeaderSize)
	if err := readFull(pv.r, h, off); err != nil {
		return nil, fmt.Errorf("%s at byte %d: %w", what, off, err)
	}
	bad := func(format string, args ...any) error { return corrupt(what, off, format, args...) }
	fixed := decode[MDAHeaderFixed](h)
	if got := calcCRC(initialCRC, h[4:]); got != fixed.Checksum {
		return nil, bad("header checksum is %#08x, header says %#08x", got, fixed.Checksum)
	}
	if !bytes.Equal(fixed.Magic[:], []byte(mdaMagic)) {
		return nil, bad("bad magic %q", fixed.Magic[:])
	}
	if fixed.Version != mdaVersion {
		return nil, bad("version %d, want %d", fixed.Version, mdaVersion)
	}
	if fixed.Start != a.Offset {
		return nil, bad("header says it starts at byte %d", fixed.Start)
	}
	if fixed.Size != a.Size {
		// LVM trusts the header; so do we, within the device.
		if fixed.Size < mdaHeaderSize || fixed.Size > uint64(pv.size)-a.Offset {
			return nil, bad("area size %d does not fit the device", fixed.Size)
		}
	}
	rl := decode[RawLocn](h[mdaHeaderFixedSize:])
	if rl.Offset == 0 {
		return nil, nil // no metadata written here yet
	}
	if rl.Flags&rawLocnIgnored != 0 {
		return nil, nil
	}
	size := fixed.Size
	if rl.Offset < mdaHeaderSize || rl.Offset >= size || rl.Size == 0 || rl.Size > size-mdaHeaderSize || rl.Size > maxMetadataText {
		return nil, bad("metadata text location (offset %d, %d bytes) outside the area of %d bytes", rl.Offset, rl.Size, size)
	}
	text := make([]byte, rl.Size)
	first := rl.Size
	if rl.Offset+rl.Size > size {
		// The text wraps to just after the header (format-text.c).
		first = size - rl.Offset
	}
	if err := readFull(pv.r, text[:first], off+int64(rl.Offset)); err != nil {
		return nil, fmt.Errorf("%s: reading metadata text at byte %d: %w", what, off+int64(rl.Offset), err)
	}
	if first < rl.Size {
		if err := readFull(pv.r, text[first:], off+mdaHeaderSize); err != nil {
			return nil, fmt.Errorf("%s: reading wrapped metadata text at byte %d: %w", what, off+mdaHeaderSize, err)
		}
	}
	if got := calcCRC(initialCRC, text); got != rl.Checksum {
		return nil, corrupt(what, off+int64(rl.Offset), "metadata text checksum is %#08x, header says %#08x", got, rl.Checksum)
	}
	md, err := ParseMetadata(text)
	if err != nil {
		return nil, corrupt(what, off+int64(rl.Offset), "metadata text: %v", err)
	}
	return md, nil
}

func corrupt(what string, off int64, format string, args ...any) error {
	return &fsys.CorruptError{FS: what, Off: off, Msg: fmt.Sprintf(format, args...)}
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
