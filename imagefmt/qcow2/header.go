package qcow2

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// ParsedHeader is a qcow2 header that ParseHeader has validated, with the
// values derived from it and the header extensions decoded. Every offset
// and count in it has been checked against the file size and the limits of
// the spec, so code walking the tables can trust them.
//
// It is shared with the writer (rw.go opens images for in-place writes from
// it): fields are stable API. Offsets are bytes in the image file.
type ParsedHeader struct {
	Header // the raw fields as decoded (layout.go)

	ClusterSize    int64
	SubclusterSize int64 // ClusterSize unless ExtendedL2
	ExtendedL2     bool  // L2 entries are 16 bytes with subcluster bitmaps
	L2EntrySize    int64 // 8 or 16
	L2Entries      int64 // entries per L2 table (one cluster)
	VirtualSize    int64
	// L1Needed is the number of L1 entries that map VirtualSize; L1Size
	// may be larger (room for VM state of snapshots).
	L1Needed int64

	BackingFile   string // as recorded in the image, "" for none
	BackingFormat string // backing format extension, "" when absent

	HasDataFile bool   // incompatible bit 2: guest clusters live in DataFile
	DataFile    string // external data file name as recorded
	DataFileRaw bool   // autoclear bit 1: the data file is a valid raw image

	Compression string // "zlib" or "zstd"

	FeatureNames []FeatureNameEntry // feature name table, if any
	// Bitmaps is the bitmaps extension, nil when absent or when the
	// autoclear bit says it is inconsistent (qemu then ignores it).
	Bitmaps *BitmapsExtension
	// UnknownExtensions are kept so a writer rewriting the header can
	// preserve them (spec: unknown extensions can be safely ignored, and
	// their data must survive a header rewrite).
	UnknownExtensions []RawExtension
	// ExtensionsEnd is the offset just past the end-of-extensions marker (or
	// past the last extension when the area ends without one).
	ExtensionsEnd int64

	Warnings []string // oddities that do not stop reading
}

// RawExtension is a header extension vmmount does not interpret.
type RawExtension struct {
	Type uint32
	Data []byte
}

// maxFirstCluster bounds what ParseHeader reads: the header, its extensions
// and the backing file name all live in the first cluster, at most 2 MiB.
const maxFirstCluster = 1 << MaxClusterBits

// ParseHeader reads and validates the header of the qcow2 image in r, of
// size bytes, named name in errors. It refuses versions other than 2 and 3,
// encrypted images and unknown incompatible features (naming them from the
// feature name table) with errors matching vdisk.ErrUnsupported, and
// anything inconsistent with vdisk.FormatError (vdisk.ErrFormat) naming the
// offset of the field.
func ParseHeader(r io.ReaderAt, size int64, name string) (*ParsedHeader, error) {
	if size < HeaderV2Size {
		return nil, fmtErr(name, 0, size, "file too short for a qcow2 header (%d bytes)", size)
	}
	var fixed [HeaderV3CompressionSize]byte
	n, err := r.ReadAt(fixed[:min(int64(len(fixed)), size)], 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == min(int64(len(fixed)), size)) {
		return nil, fmt.Errorf("%s: reading header: %w", name, err)
	}
	h, ok := DecodeHeader(fixed[:n])
	if !ok {
		return nil, fmtErr(name, 0, size, "file too short for a qcow2 version 3 header")
	}
	if h.Magic != Magic {
		return nil, fmtErr(name, 0, h.Magic, "not a qcow2 image: bad magic")
	}
	if h.Version != 2 && h.Version != 3 {
		return nil, unsupErr(name, 4, h.Version, "qcow2 version %d is not supported (only 2 and 3)", h.Version)
	}
	if h.ClusterBits < MinClusterBits || h.ClusterBits > MaxClusterBits {
		return nil, fmtErr(name, 20, h.ClusterBits, "cluster_bits out of range %d..%d", MinClusterBits, MaxClusterBits)
	}
	p := &ParsedHeader{Header: h, ClusterSize: 1 << h.ClusterBits}
	cs := p.ClusterSize
	if h.Version >= 3 {
		if h.HeaderLength < HeaderV3Size {
			return nil, fmtErr(name, 100, h.HeaderLength, "header_length shorter than %d", HeaderV3Size)
		}
		if int64(h.HeaderLength) > cs {
			return nil, fmtErr(name, 100, h.HeaderLength, "header_length exceeds the cluster size %d", cs)
		}
		if int64(h.HeaderLength) > size {
			return nil, fmtErr(name, 100, h.HeaderLength, "file of %d bytes is shorter than its header", size)
		}
	}

	// The first cluster holds the header, the extensions and the backing
	// file name (spec "Header extensions"); read it once.
	first := make([]byte, min(cs, size, maxFirstCluster))
	if n, err := r.ReadAt(first, 0); n < len(first) {
		return nil, fmt.Errorf("%s: reading the header cluster: %w", name, err)
	}

	if h.BackingFileOffset > uint64(cs) {
		return nil, fmtErr(name, 8, h.BackingFileOffset, "backing file name offset outside the header cluster")
	}
	extEnd := cs
	if h.BackingFileOffset != 0 {
		extEnd = int64(h.BackingFileOffset)
	}

	// Feature bits. Unknown incompatible ones are refused by name.
	if unknown := h.IncompatibleFeatures &^ IncompatKnown; unknown != 0 {
		tmp := &ParsedHeader{Header: h, ClusterSize: cs}
		_ = tmp.parseExtensions(first, extEnd, name) // best effort, for names
		return nil, unsupErr(name, 72, h.IncompatibleFeatures, "unsupported qcow2 incompatible feature(s): %s",
			featureList(tmp.FeatureNames, FeatureIncompatible, unknown))
	}
	if h.CryptMethod != CryptNone {
		method := fmt.Sprintf("method %d", h.CryptMethod)
		switch h.CryptMethod {
		case CryptAES:
			method = "AES"
		case CryptLUKS:
			method = "LUKS"
		}
		return nil, unsupErr(name, 32, h.CryptMethod, "encrypted qcow2 image (%s) is not supported; decrypt it first with qemu-img convert --object secret,... --image-opts", method)
	}
	switch {
	case h.IncompatibleFeatures&IncompatCompression != 0 && p.CompressionType == CompressionZlib:
		return nil, fmtErr(name, 104, p.CompressionType, "compression type bit set but compression_type is zlib")
	case h.IncompatibleFeatures&IncompatCompression == 0 && p.CompressionType != CompressionZlib:
		return nil, fmtErr(name, 104, p.CompressionType, "compression_type is not zlib but the compression type bit is clear")
	}
	switch p.CompressionType {
	case CompressionZlib:
		p.Compression = CompressionNameZlib
	case CompressionZstd:
		p.Compression = CompressionNameZstd
	default:
		return nil, unsupErr(name, 104, p.CompressionType, "unknown compression type %d", p.CompressionType)
	}
	if h.RefcountOrder > 6 {
		return nil, fmtErr(name, 96, h.RefcountOrder, "refcount_order above 6")
	}

	p.ExtendedL2 = h.IncompatibleFeatures&IncompatExtendedL2 != 0
	p.SubclusterSize, p.L2EntrySize = cs, L2EntrySize
	if p.ExtendedL2 {
		if h.ClusterBits < MinExtendedL2ClusterBits {
			return nil, fmtErr(name, 20, h.ClusterBits, "extended L2 entries need clusters of at least %d bytes", 1<<MinExtendedL2ClusterBits)
		}
		p.SubclusterSize, p.L2EntrySize = cs/SubclustersPerCluster, ExtendedL2EntrySize
	}
	p.L2Entries = cs / p.L2EntrySize

	if err := p.checkTables(size, name); err != nil {
		return nil, err
	}

	// Backing file name (spec "Header", bytes 8-19): inside the first
	// cluster, at most 1023 bytes.
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize > MaxBackingName || uint64(h.BackingFileSize) > uint64(cs)-h.BackingFileOffset {
			return nil, fmtErr(name, 16, h.BackingFileSize, "backing file name too long")
		}
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if end > uint64(len(first)) {
			return nil, fmtErr(name, int64(h.BackingFileOffset), size, "backing file name past the end of the file")
		}
		p.BackingFile = string(first[h.BackingFileOffset:end])
		if p.BackingFile == "" {
			return nil, fmtErr(name, 16, 0, "empty backing file name")
		}
	}

	if err := p.parseExtensions(first, extEnd, name); err != nil {
		return nil, err
	}

	p.HasDataFile = h.IncompatibleFeatures&IncompatDataFile != 0
	p.DataFileRaw = h.AutoclearFeatures&AutoclearDataFileRaw != 0
	if p.HasDataFile && p.DataFile == "" {
		return nil, unsupErr(name, 72, h.IncompatibleFeatures, "image uses an external data file but records no name for it")
	}
	if !p.HasDataFile {
		if p.DataFileRaw {
			return nil, fmtErr(name, 88, h.AutoclearFeatures, "raw external data bit set without an external data file")
		}
		if p.DataFile != "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("data file name %q recorded but the data file bit is clear; ignored", p.DataFile))
			p.DataFile = ""
		}
	}
	return p, nil
}

// checkTables validates the virtual size and the table locations in the
// header: aligned, inside the file, not in the header cluster and not on
// top of each other, sizes within qemu's limits.
func (p *ParsedHeader) checkTables(size int64, name string) error {
	h, cs := &p.Header, p.ClusterSize
	if h.Size > math.MaxInt64 {
		return fmtErr(name, 24, h.Size, "virtual size too large")
	}
	p.VirtualSize = int64(h.Size)
	// One L1 entry maps L2Entries clusters: at most 2^18 * 2^21 bytes, so
	// the shift cannot overflow.
	span := uint64(p.L2Entries) << h.ClusterBits
	need := h.Size / span
	if h.Size%span != 0 {
		need++
	}
	if need > MaxL1Size {
		return fmtErr(name, 24, h.Size, "virtual size needs %d L1 entries, more than the %d qemu supports", need, MaxL1Size)
	}
	p.L1Needed = int64(need)
	if h.L1Size > MaxL1Size {
		return fmtErr(name, 36, h.L1Size, "L1 table larger than %d entries", MaxL1Size)
	}
	if uint64(h.L1Size) < need {
		return fmtErr(name, 36, h.L1Size, "L1 table too small for the virtual size (needs %d entries)", need)
	}
	if h.L1Size > 0 {
		if err := checkTable(name, 40, "L1 table", h.L1TableOffset, uint64(h.L1Size)*8, cs, size); err != nil {
			return err
		}
	}

	if h.RefcountTableClusters == 0 {
		return fmtErr(name, 56, 0, "image has no refcount table")
	}
	if uint64(h.RefcountTableClusters)*uint64(cs) > MaxRefcountSize*8 {
		return fmtErr(name, 56, h.RefcountTableClusters, "refcount table larger than %d bytes", MaxRefcountSize*8)
	}
	rtBytes := uint64(h.RefcountTableClusters) * uint64(cs)
	if err := checkTable(name, 48, "refcount table", h.RefcountTableOffset, rtBytes, cs, size); err != nil {
		return err
	}

	if h.NbSnapshots > MaxSnapshots {
		return fmtErr(name, 60, h.NbSnapshots, "more than %d snapshots", MaxSnapshots)
	}
	if h.NbSnapshots > 0 {
		if err := checkTable(name, 64, "snapshot table", h.SnapshotsOffset, uint64(h.NbSnapshots)*SnapshotHeaderSize, cs, size); err != nil {
			return err
		}
	}

	if h.L1Size > 0 && overlaps(h.L1TableOffset, uint64(h.L1Size)*8, h.RefcountTableOffset, rtBytes) {
		return fmtErr(name, 40, h.L1TableOffset, "L1 table overlaps the refcount table at %d", h.RefcountTableOffset)
	}
	return nil
}

// checkTable checks a table the header locates by the field at fieldOff:
// cluster aligned, not in the header cluster, entirely inside the file.
func checkTable(name string, fieldOff int64, what string, off, length uint64, cs, size int64) error {
	switch {
	case off%uint64(cs) != 0:
		return fmtErr(name, fieldOff, off, "%s offset not aligned to the cluster size %d", what, cs)
	case off < uint64(cs):
		return fmtErr(name, fieldOff, off, "%s inside the header cluster", what)
	case off >= uint64(size) || length > uint64(size)-off:
		return fmtErr(name, fieldOff, off, "%s of %d bytes reaches past the end of the file (%d bytes)", what, length, size)
	}
	return nil
}

func overlaps(a, alen, b, blen uint64) bool {
	return a < b+blen && b < a+alen
}

// parseExtensions walks the header extensions in first[HeaderLength:end]
// (spec "Header extensions").
func (p *ParsedHeader) parseExtensions(first []byte, end int64, name string) error {
	// Version 2 headers count as 72 bytes (DecodeHeader); qemu reads
	// extensions after them too, e.g. the backing format of v2 images.
	off := int64(p.HeaderLength)
	end = min(end, int64(len(first)))
	seen := map[uint32]bool{}
	for off < end {
		if end-off < ExtensionHeaderSize {
			return fmtErr(name, off, end-off, "truncated header extension")
		}
		typ := beUint32At(first, off)
		length := int64(beUint32At(first, off+4))
		dataOff := off + ExtensionHeaderSize
		if length > end-dataOff {
			return fmtErr(name, off, length, "header extension 0x%08x of %d bytes overflows the header area", typ, length)
		}
		data := first[dataOff : dataOff+length]
		if typ == ExtEnd {
			p.ExtensionsEnd = dataOff
			return nil
		}
		if seen[typ] {
			p.Warnings = append(p.Warnings, fmt.Sprintf("header extension 0x%08x appears twice; the last one wins", typ))
		}
		seen[typ] = true
		switch typ {
		case ExtBackingFormat:
			// qemu keeps the name in a 16-byte buffer.
			if length >= 16 {
				return fmtErr(name, off, length, "backing format name too long")
			}
			p.BackingFormat = string(data)
		case ExtFeatureTable:
			p.FeatureNames = p.FeatureNames[:0]
			for i := int64(0); i+FeatureNameEntrySize <= length; i += FeatureNameEntrySize {
				p.FeatureNames = append(p.FeatureNames, DecodeFeatureNameEntry(data[i:]))
			}
		case ExtBitmaps:
			if length != BitmapsExtensionSize {
				return fmtErr(name, off, length, "bitmaps extension of %d bytes, want %d", length, BitmapsExtensionSize)
			}
			if p.AutoclearFeatures&AutoclearBitmaps == 0 {
				p.Warnings = append(p.Warnings, "bitmaps were modified by a program without bitmap support and are inconsistent; ignored")
				break
			}
			b := DecodeBitmapsExtension(data)
			if err := p.checkBitmaps(&b, dataOff, name); err != nil {
				return err
			}
			p.Bitmaps = &b
		case ExtEncryption:
			// Only valid with LUKS, which is refused before we get here.
			return unsupErr(name, off, typ, "image carries an encryption header extension; encrypted images are not supported")
		case ExtDataFile:
			if length == 0 {
				return fmtErr(name, off, 0, "empty external data file name")
			}
			p.DataFile = string(data)
		default:
			p.UnknownExtensions = append(p.UnknownExtensions, RawExtension{Type: typ, Data: append([]byte(nil), data...)})
		}
		off = dataOff + (length+7)&^7
	}
	p.ExtensionsEnd = off
	return nil
}

// checkBitmaps validates the bitmaps extension found at dataOff (spec
// "Bitmaps extension") the way qemu does before it loads the directory.
func (p *ParsedHeader) checkBitmaps(b *BitmapsExtension, dataOff int64, name string) error {
	switch {
	case b.Reserved32 != 0:
		return fmtErr(name, dataOff+4, b.Reserved32, "bitmaps extension reserved field not zero")
	case b.NbBitmaps == 0:
		return fmtErr(name, dataOff, 0, "bitmaps extension with no bitmaps")
	case b.NbBitmaps > MaxBitmaps:
		return fmtErr(name, dataOff, b.NbBitmaps, "more than %d bitmaps", MaxBitmaps)
	case b.BitmapDirectorySize > MaxBitmapDirectorySize:
		return fmtErr(name, dataOff+8, b.BitmapDirectorySize, "bitmap directory larger than %d bytes", MaxBitmapDirectorySize)
	case b.BitmapDirectoryOffset%uint64(p.ClusterSize) != 0 || b.BitmapDirectoryOffset == 0:
		return fmtErr(name, dataOff+16, b.BitmapDirectoryOffset, "bitmap directory offset not cluster aligned")
	}
	return nil
}

// featureList names the bits of mask of feature type typ, from the
// feature name table where it has them.
func featureList(table []FeatureNameEntry, typ uint8, mask uint64) string {
	s := ""
	for mask != 0 {
		bit := bits.TrailingZeros64(mask)
		mask &^= 1 << bit
		n := fmt.Sprintf("bit %d", bit)
		for i := range table {
			if table[i].Type == typ && int(table[i].Bit) == bit && table[i].NameString() != "" {
				n = fmt.Sprintf("%q (bit %d)", table[i].NameString(), bit)
			}
		}
		if s != "" {
			s += ", "
		}
		s += n
	}
	return s
}

func beUint32At(b []byte, off int64) uint32 {
	return uint32(b[off])<<24 | uint32(b[off+1])<<16 | uint32(b[off+2])<<8 | uint32(b[off+3])
}

// fmtErr is a FormatError for malformed contents at off of the image file.
func fmtErr(name string, off int64, val any, format string, args ...any) error {
	return &vdisk.FormatError{Image: name, Off: off, Msg: fmt.Sprintf(format, args...), Val: val, Err: vdisk.ErrFormat}
}

// unsupErr is a FormatError for valid contents vmmount does not handle.
func unsupErr(name string, off int64, val any, format string, args ...any) error {
	return &vdisk.FormatError{Image: name, Off: off, Msg: fmt.Sprintf(format, args...), Val: val, Err: vdisk.ErrUnsupported}
}
