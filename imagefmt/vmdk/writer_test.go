package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
)

// Small writers for what qemu-img does not make: stream-optimized files laid
// out as VMware exports them (grain directory at the end, header copy in the
// footer) and COWD extents.

func sectors(n int64) int64 { return (n + SectorSize - 1) / SectorSize }

func padSector(b []byte) []byte {
	if r := len(b) % SectorSize; r != 0 {
		b = append(b, make([]byte, SectorSize-r)...)
	}
	return b
}

// buildStream returns a stream-optimized sparse extent holding raw, grains
// of grainSectors, with GD_AT_END in the header and the real header in the
// footer. Grains of zeros are left out.
func buildStream(raw []byte, grainSectors int64, desc string) []byte {
	capSectors := sectors(int64(len(raw)))
	gtes := int64(512)
	grainBytes := grainSectors * SectorSize
	ngrains := (capSectors + grainSectors - 1) / grainSectors
	ngt := (ngrains + gtes - 1) / gtes
	h := SparseHeader{MagicNumber: MagicKDMVValue, Version: 3, Flags: FlagNewlineTest | FlagCompressed | FlagMarkers,
		Capacity: uint64(capSectors), GrainSize: uint64(grainSectors), DescriptorOffset: 1,
		DescriptorSize: uint64(sectors(int64(len(desc)))), NumGTEsPerGT: uint32(gtes), GDOffset: GDAtEnd,
		OverHead: 128, SingleEndLineChar: '\n', NonEndLineChar: ' ', DoubleEndLineChar1: '\r',
		DoubleEndLineChar2: '\n', CompressAlgorithm: CompressDeflate}
	out := make([]byte, 128*SectorSize)
	h.Encode(out)
	copy(out[SectorSize:], desc)
	gts := make([]uint32, ngt*gtes)
	for g := int64(0); g < ngrains; g++ {
		chunk := raw[g*grainBytes : min(int64(len(raw)), (g+1)*grainBytes)]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue
		}
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(chunk)
		zw.Close()
		gts[g] = uint32(len(out) / SectorSize)
		m := make([]byte, GrainMarkerSize)
		binary.LittleEndian.PutUint64(m, uint64(g*grainSectors))
		binary.LittleEndian.PutUint32(m[8:], uint32(z.Len()))
		out = append(out, padSector(append(m, z.Bytes()...))...)
	}
	marker := func(val uint64, typ uint32) {
		m := make([]byte, MarkerSize)
		Marker{Val: val, Type: typ}.Encode(m)
		out = append(out, m...)
	}
	gd := make([]byte, 0, ngt*4)
	for t := int64(0); t < ngt; t++ {
		marker(uint64(sectors(gtes*4)), MarkerGT)
		gd = binary.LittleEndian.AppendUint32(gd, uint32(len(out)/SectorSize))
		for _, e := range gts[t*gtes : (t+1)*gtes] {
			out = binary.LittleEndian.AppendUint32(out, e)
		}
		out = padSector(out)
	}
	marker(uint64(sectors(int64(len(gd)))), MarkerGD)
	gdSector := len(out) / SectorSize
	out = padSector(append(out, gd...))
	marker(1, MarkerFooter)
	foot := h
	foot.GDOffset = uint64(gdSector)
	fb := make([]byte, SparseHeaderSize)
	foot.Encode(fb)
	out = append(out, fb...)
	marker(0, MarkerEOS)
	return out
}

// buildCOWD returns a COWD sparse extent holding raw with grains of
// grainSectors; zero grains are left out.
func buildCOWD(raw []byte, grainSectors int64) []byte {
	capSectors := sectors(int64(len(raw)))
	grainBytes := grainSectors * SectorSize
	ngrains := (capSectors + grainSectors - 1) / grainSectors
	ngt := (ngrains + COWDGTEs - 1) / COWDGTEs
	gdSector := int64(4)
	gtStart := gdSector + sectors(ngt*4)
	h := COWDHeader{Version: 1, Flags: 3, NumSectors: uint32(capSectors), GrainSize: uint32(grainSectors),
		GDOffset: uint32(gdSector), NumGDEntries: uint32(ngt)}
	copy(h.MagicNumber[:], MagicCOWD)
	out := make([]byte, (gtStart+ngt*sectors(COWDGTEs*4))*SectorSize)
	h.Encode(out)
	for t := int64(0); t < ngt; t++ {
		binary.LittleEndian.PutUint32(out[gdSector*SectorSize+4*t:], uint32(gtStart+t*sectors(COWDGTEs*4)))
	}
	for g := int64(0); g < ngrains; g++ {
		chunk := raw[g*grainBytes : min(int64(len(raw)), (g+1)*grainBytes)]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue
		}
		gt := gtStart + (g/COWDGTEs)*sectors(COWDGTEs*4)
		binary.LittleEndian.PutUint32(out[gt*SectorSize+4*(g%COWDGTEs):], uint32(len(out)/SectorSize))
		out = append(out, chunk...)
		out = append(out, make([]byte, grainBytes-int64(len(chunk)))...)
	}
	return out
}
