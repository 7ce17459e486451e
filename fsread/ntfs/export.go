package ntfs

import "time"

// Exports for package inject/ntfswrite, which writes the structures this
// package reads: the on-disk structs (fields named as in ntfs-3g's
// layout.h), their sizes, and the decoders of update sequence arrays and
// mapping pairs. Only additions: nothing here changes how the reader works.

// On-disk structs, little endian (see layout.go).
type (
	BootSector          = bootSector
	RecordHeader        = recordHeader
	AttrHeader          = attrHeader
	ResidentHeader      = residentHeader
	NonResidentHeader   = nonResidentHeader
	StandardInformation = standardInformation
	FileNameHeader      = fileNameHeader
	AttrListEntry       = attrListEntry
	IndexRoot           = indexRoot
	IndexBlockHeader    = indexBlockHeader
	IndexEntryHeader    = indexEntryHeader
)

// Sizes of the structs above as they are on disk.
const (
	BootSectorSize          = bootSectorSize
	RecordHeaderSize        = recordHeaderSize
	AttrHeaderSize          = attrHeaderSize
	ResidentHeaderSize      = residentHeaderSize
	NonResidentHeaderSize   = nonResidentHeaderSize // with CompressedSize
	StandardInformationSize = standardInformationSize
	FileNameHeaderSize      = fileNameHeaderSize
	AttrListEntrySize       = attrListEntrySize
	IndexRootSize           = indexRootSize
	IndexBlockHeaderSize    = indexBlockHeaderSize
	IndexHeaderOffset       = indexHeaderOffset
	IndexEntryHeaderSize    = indexEntryHeaderSize
)

// ApplyFixups checks and undoes the update sequence array of a
// multi-sector protected record (MFT record, INDX block, restart page) in
// place: 512-byte strides, usaCount-1 of them.
func ApplyFixups(b []byte, usaOfs, usaCount uint16) error { return applyFixups(b, usaOfs, usaCount) }

// Run maps clusters [VCN, VCN+N) of an attribute to [LCN, LCN+N) of the
// volume; LCN is -1 for a hole.
type Run struct{ VCN, LCN, N int64 }

// DecodeRuns decodes an attribute extent's mapping pairs, which must cover
// exactly VCNs lowVCN..highVCN inside a volume of clusters clusters.
func DecodeRuns(b []byte, lowVCN, highVCN, clusters int64) ([]Run, error) {
	rs, err := decodeRuns(b, lowVCN, highVCN, clusters)
	if err != nil {
		return nil, err
	}
	out := make([]Run, len(rs))
	for i, r := range rs {
		out[i] = Run{VCN: r.vcn, LCN: r.lcn, N: r.n}
	}
	return out, nil
}

// Time converts an NTFS time (100 ns units since 1601-01-01 UTC) as
// ntfs-3g does.
func Time(t int64) time.Time { return ntfsTime(t) }
