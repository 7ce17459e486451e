package vhdx

import (
	"encoding/binary"
	"slices"
	"unicode/utf16"
)

// testDisk describes a VHDX for build, the small writer the tests use for
// what qemu-img cannot make: differencing disks, 4096-byte logical sectors,
// block states other than present and absent, logs to replay.
type testDisk struct {
	size       int64
	blockSize  int64
	sector     int64 // logical sector size
	fixed      bool
	dataWrite  GUID
	diskID     GUID
	parentLink GUID // differencing when parentRel or parentAbs is set
	parentRel  string
	parentAbs  string
	// sectors maps a logical sector number to its data. A block holding
	// any is allocated; in a differencing disk only those sectors are
	// marked present (a block with all of them is fully present).
	sectors map[int64][]byte
	// states gives other blocks a state (ZERO, UNDEFINED, UNMAPPED).
	states map[int64]uint8
	// logGUID, when set, goes into the header with the log region log
	// (1 MiB at 1 MiB).
	logGUID GUID
	log     []byte
}

func (d *testDisk) diff() bool { return d.parentRel != "" || d.parentAbs != "" }

func u16(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func alignMiB(n int64) int64 { return (n + MiB - 1) / MiB * MiB }

func (d *testDisk) build() []byte {
	le := binary.LittleEndian
	const logOff, metaOff, batOff = 1 * MiB, 2 * MiB, 3 * MiB
	bs := d.blockSize
	cr := SectorsPerChunk * d.sector / bs
	payload := (d.size + bs - 1) / bs
	total := payload + (payload-1)/cr
	if d.diff() {
		total = (payload + cr - 1) / cr * (cr + 1)
	}
	batLen := alignMiB(total * 8)
	img := make([]byte, batOff+batLen)
	copy(img, FileSignature)
	copy(img[8:], u16("vmmount test writer"))
	for i, off := range []int64{Header1Offset, Header2Offset} {
		h := Header{SequenceNumber: uint64(i + 1), FileWriteGUID: GUID{1}, DataWriteGUID: d.dataWrite,
			LogGUID: d.logGUID, Version: 1, LogLength: MiB, LogOffset: logOff}
		copy(h.Signature[:], HeaderSignature)
		h.Encode(img[off:])
	}
	regions := []RegionEntry{{GUID: RegionBAT, FileOffset: batOff, Length: uint32(batLen), Required: 1},
		{GUID: RegionMetadata, FileOffset: metaOff, Length: MiB, Required: 1}}
	EncodeRegionTable(img[RegionTable1Offset:], regions)
	EncodeRegionTable(img[RegionTable2Offset:], regions)
	copy(img[logOff:], d.log)

	// Metadata items, each at its own 4 KiB from 64 KiB on.
	var entries []MetadataEntry
	pos := int64(MetadataTableSize)
	item := func(id GUID, b []byte, flags uint32) {
		copy(img[metaOff+pos:], b)
		entries = append(entries, MetadataEntry{ItemID: id, Offset: uint32(pos), Length: uint32(len(b)), Flags: flags})
		pos += 4 * KiB
	}
	fp := make([]byte, 8)
	le.PutUint32(fp, uint32(bs))
	if d.fixed {
		le.PutUint32(fp[4:], LeaveBlockAllocated)
	}
	if d.diff() {
		le.PutUint32(fp[4:], HasParent)
	}
	item(MetaFileParameters, fp, MetaIsRequired)
	item(MetaVirtualDiskSize, le.AppendUint64(nil, uint64(d.size)), MetaIsRequired|MetaIsVirtualDisk)
	item(MetaVirtualDiskID, d.diskID[:], MetaIsRequired|MetaIsVirtualDisk)
	item(MetaLogicalSector, le.AppendUint32(nil, uint32(d.sector)), MetaIsRequired|MetaIsVirtualDisk)
	item(MetaPhysicalSector, le.AppendUint32(nil, 4096), MetaIsRequired|MetaIsVirtualDisk)
	if d.diff() {
		kv := [][2]string{{"parent_linkage", "{" + d.parentLink.String() + "}"}}
		if d.parentRel != "" {
			kv = append(kv, [2]string{"relative_path", d.parentRel})
		}
		if d.parentAbs != "" {
			kv = append(kv, [2]string{"absolute_win32_path", d.parentAbs})
		}
		loc := append(ParentLocatorTypeVHD[:], 0, 0)
		loc = le.AppendUint16(loc, uint16(len(kv)))
		data := int64(20 + 12*len(kv))
		var strs []byte
		for _, p := range kv {
			k, v := u16(p[0]), u16(p[1])
			loc = le.AppendUint32(loc, uint32(data+int64(len(strs))))
			loc = le.AppendUint32(loc, uint32(data+int64(len(strs)+len(k))))
			loc = le.AppendUint16(loc, uint16(len(k)))
			loc = le.AppendUint16(loc, uint16(len(v)))
			strs = append(append(strs, k...), v...)
		}
		item(MetaParentLocator, append(loc, strs...), MetaIsRequired|MetaIsVirtualDisk)
	}
	EncodeMetadataTable(img[metaOff:], entries)

	// Blocks.
	bat := make([]uint64, total)
	byBlock := map[int64][]int64{}
	for s := range d.sectors {
		b := s * d.sector / bs
		byBlock[b] = append(byBlock[b], s)
	}
	blocks := make([]int64, 0, len(byBlock))
	for b := range byBlock {
		blocks = append(blocks, b)
	}
	slices.Sort(blocks)
	if d.fixed {
		blocks = blocks[:0]
		for b := int64(0); b < payload; b++ {
			blocks = append(blocks, b)
		}
	}
	bitmaps := map[int64]int64{} // chunk -> file offset of its sector bitmap
	perBlock := bs / d.sector
	for _, b := range blocks {
		fo := int64(len(img))
		img = append(img, make([]byte, bs)...)
		for _, s := range byBlock[b] {
			copy(img[fo+(s-b*perBlock)*d.sector:], d.sectors[s])
		}
		state := uint8(PayloadFullyPresent)
		if d.diff() && int64(len(byBlock[b])) < perBlock {
			state = PayloadPartiallyPresent
			c := b / cr
			if _, ok := bitmaps[c]; !ok {
				bitmaps[c] = int64(len(img))
				img = append(img, make([]byte, SectorBitmapSize)...)
			}
			for _, s := range byBlock[b] {
				i := s - c*SectorsPerChunk
				img[bitmaps[c]+i/8] |= 1 << (i % 8)
			}
		}
		bat[b+b/cr] = MakeBATEntry(state, fo)
	}
	for c, off := range bitmaps {
		bat[c*(cr+1)+cr] = MakeBATEntry(SBPresent, off)
	}
	for b, s := range d.states {
		bat[b+b/cr] = MakeBATEntry(s, 0)
	}
	for i, e := range bat {
		le.PutUint64(img[batOff+8*int64(i):], e)
	}
	return img
}

// testLogEntry is one log entry for buildLog: zero ranges and 4 KiB pages to
// write, at 4 KiB-aligned file offsets.
type testLogEntry struct {
	zeros [][2]int64 // file offset, length
	pages map[int64][]byte
}

// buildLog returns a 1 MiB log region holding entries with sequence numbers
// from seq on, all in one sequence starting at log offset 0.
func buildLog(guid GUID, seq uint64, fileSize int64, entries []testLogEntry) []byte {
	le := binary.LittleEndian
	log := make([]byte, MiB)
	pos := int64(0)
	for i, te := range entries {
		s := seq + uint64(i)
		offs := make([]int64, 0, len(te.pages))
		for o := range te.pages {
			offs = append(offs, o)
		}
		slices.Sort(offs)
		ndesc := len(te.zeros) + len(offs)
		descBytes := (LogEntryHeaderSize + int64(ndesc)*LogDescriptorSize + LogSectorSize - 1) / LogSectorSize * LogSectorSize
		n := descBytes + int64(len(offs))*LogSectorSize
		e := log[pos : pos+n]
		h := LogEntryHeader{EntryLength: uint32(n), Tail: 0, SequenceNumber: s, DescriptorCount: uint32(ndesc),
			LogGUID: guid, FlushedFileOffset: uint64(fileSize), LastFileOffset: uint64(fileSize)}
		copy(h.Signature[:], LogEntrySignature)
		h.Encode(e)
		d := int64(LogEntryHeaderSize)
		for _, z := range te.zeros {
			desc := LogDescriptor{LeadingBytes: uint64(z[1]), FileOffset: uint64(z[0]), SequenceNumber: s}
			copy(desc.Signature[:], ZeroDescSignature)
			desc.Encode(e[d:])
			d += LogDescriptorSize
		}
		for j, o := range offs {
			page := te.pages[o]
			desc := LogDescriptor{TrailingBytes: le.Uint32(page[LogSectorSize-4:]), LeadingBytes: le.Uint64(page),
				FileOffset: uint64(o), SequenceNumber: s}
			copy(desc.Signature[:], DataDescSignature)
			desc.Encode(e[d:])
			d += LogDescriptorSize
			sec := e[descBytes+int64(j)*LogSectorSize:]
			copy(sec, DataSecSignature)
			le.PutUint32(sec[4:], uint32(s>>32))
			copy(sec[8:LogSectorSize-4], page[8:LogSectorSize-4])
			le.PutUint32(sec[LogSectorSize-4:], uint32(s))
		}
		le.PutUint32(e[4:], Checksum(e, 4))
		pos += n
	}
	return log
}
