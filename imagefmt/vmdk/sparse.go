package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/vmmount/vmmount/imagefmt/internal/runs"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Limits on sparse extents.
const (
	// maxGrainSectors is qemu's bound (1 GiB grains are unrealistic).
	maxGrainSectors = 0x200000
	// maxCompressedGrain bounds grains we inflate into memory; VMware
	// writes 64 KiB.
	maxCompressedGrain = 16 << 20
	// maxGTEs is qemu's bound on entries per grain table.
	maxGTEs = 512
	// maxGDEntries bounds the grain directory held in memory (32 MiB); it
	// must fit in the file anyway.
	maxGDEntries = 8 << 20
)

// sparseExtent is a hosted sparse (KDMV) or ESX sparse (COWD) extent.
type sparseExtent struct {
	img        *Image
	index      int // extent number, part of cache keys
	f          vdisk.File
	name       string
	capacity   int64 // bytes
	grainSize  int64 // bytes
	gtes       int64 // entries per grain table
	gd         []uint32
	gdOff      int64 // file offset of the grain directory, for errors
	zeroGrain  bool
	compressed bool
	markers    bool
	header     SparseHeader // KDMV only
	cowd       bool
}

func (s *sparseExtent) errAt(off int64, val any, format string, args ...any) error {
	return &vdisk.FormatError{Image: s.name, Off: off, Msg: fmt.Sprintf(format, args...), Val: val, Err: vdisk.ErrFormat}
}

// openKDMV reads a hosted sparse extent header; stream-optimized files keep
// the real header in the footer (spec "The Stream-Optimized Compressed
// Sparse Extent": gdOffset is GD_AT_END in the first header).
func openKDMV(f vdisk.File, name string) (*sparseExtent, error) {
	s := &sparseExtent{f: f, name: name}
	size := f.Size()
	var b [SparseHeaderSize]byte
	if size < SparseHeaderSize {
		return nil, s.errAt(0, size, "file too small for a sparse extent header")
	}
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", name, err)
	}
	h := DecodeSparseHeader(b[:])
	if h.GDOffset == GDAtEnd {
		// Footer marker, footer, end-of-stream marker: three sectors.
		if size < 4*SectorSize {
			return nil, s.errAt(0, size, "stream-optimized file too small for its footer")
		}
		var foot [3 * SectorSize]byte
		if _, err := f.ReadAt(foot[:], size-3*SectorSize); err != nil {
			return nil, fmt.Errorf("%s: reading footer: %w", name, err)
		}
		fm, eos := DecodeMarker(foot[:]), DecodeMarker(foot[2*SectorSize:])
		if fm.Size != 0 || fm.Type != MarkerFooter || string(foot[SectorSize:SectorSize+4]) != MagicKDMV ||
			eos.Val != 0 || eos.Size != 0 || eos.Type != MarkerEOS {
			return nil, s.errAt(size-3*SectorSize, nil, "header says grain directory at end, but there is no valid footer")
		}
		h = DecodeSparseHeader(foot[SectorSize:])
		if h.GDOffset == GDAtEnd {
			return nil, s.errAt(size-2*SectorSize, nil, "footer does not locate the grain directory")
		}
	}
	s.header = h
	if h.Version == 0 || h.Version > 3 {
		return nil, &vdisk.FormatError{Image: name, Off: 4, Msg: "unsupported sparse extent version", Val: h.Version, Err: vdisk.ErrUnsupported}
	}
	s.zeroGrain = h.Flags&FlagZeroGrain != 0
	s.markers = h.Flags&FlagMarkers != 0
	switch h.CompressAlgorithm {
	case CompressNone:
	case CompressDeflate:
		s.compressed = true
	default:
		return nil, &vdisk.FormatError{Image: name, Off: 77, Msg: "unknown grain compression", Val: h.CompressAlgorithm, Err: vdisk.ErrUnsupported}
	}
	if h.Capacity == 0 {
		return s, nil // a descriptor-only file; the caller checks
	}
	return s, s.setup(int64(h.Capacity), h.GrainSize, uint64(h.NumGTEsPerGT), h.GDOffset, 0)
}

// openCOWD reads an ESX sparse extent header.
func openCOWD(f vdisk.File, name string) (*sparseExtent, error) {
	s := &sparseExtent{f: f, name: name, cowd: true}
	var b [COWDHeaderFields]byte
	if f.Size() < SectorSize {
		return nil, s.errAt(0, f.Size(), "file too small for a COWD header")
	}
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", name, err)
	}
	h := DecodeCOWDHeader(b[:])
	return s, s.setup(int64(h.NumSectors), uint64(h.GrainSize), COWDGTEs, uint64(h.GDOffset), int64(h.NumGDEntries))
}

// setup validates the geometry and loads the grain directory. gdEntries is
// the COWD header's count, 0 to derive it from the capacity.
func (s *sparseExtent) setup(capSectors int64, grainSectors, gtes, gdSector uint64, gdEntries int64) error {
	if capSectors <= 0 || capSectors > (1<<62)/SectorSize {
		return s.errAt(12, capSectors, "bad capacity")
	}
	if grainSectors == 0 || grainSectors > maxGrainSectors {
		return s.errAt(20, grainSectors, "bad grain size (sectors)")
	}
	if s.compressed && grainSectors*SectorSize > maxCompressedGrain {
		return &vdisk.FormatError{Image: s.name, Off: 20, Msg: "compressed grains larger than 16 MiB", Val: grainSectors, Err: vdisk.ErrUnsupported}
	}
	if gtes == 0 || (gtes > maxGTEs && !s.cowd) {
		return s.errAt(44, gtes, "bad number of grain table entries")
	}
	s.capacity = capSectors * SectorSize
	s.grainSize = int64(grainSectors) * SectorSize
	s.gtes = int64(gtes)
	need := (capSectors + int64(grainSectors)*int64(gtes) - 1) / (int64(grainSectors) * int64(gtes))
	if gdEntries == 0 {
		gdEntries = need
	}
	// A COWD directory may be longer than the capacity needs; we read what
	// the capacity needs, or what it has.
	gdEntries = min(gdEntries, need)
	size := s.f.Size()
	if gdSector > uint64(size)/SectorSize || (size-int64(gdSector)*SectorSize)/4 < gdEntries {
		return s.errAt(56, gdSector, "grain directory (%d entries) outside the file", gdEntries)
	}
	if gdEntries > maxGDEntries {
		return &vdisk.FormatError{Image: s.name, Off: 12, Msg: "grain directory too large to hold", Val: gdEntries, Err: vdisk.ErrUnsupported}
	}
	s.gdOff = int64(gdSector) * SectorSize
	raw := make([]byte, gdEntries*4)
	if _, err := s.f.ReadAt(raw, s.gdOff); err != nil {
		return fmt.Errorf("%s: reading grain directory at %d: %w", s.name, s.gdOff, err)
	}
	s.gd = make([]uint32, gdEntries)
	for i := range s.gd {
		s.gd[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	return nil
}

type gtKey struct {
	ext int
	gdi int64
}

// gtBatch is how many grain tables one pread fetches when they lie back to
// back in the file (as every writer lays them out): walking the allocation
// map of a multi-terabyte disk then costs few system calls.
const gtBatch = 32

// table returns grain table gdi, from the cache or the file.
func (s *sparseExtent) table(gdi int64) ([]byte, error) {
	key := gtKey{s.index, gdi}
	if t, ok := s.img.gtCache.Get(key); ok {
		return t, nil
	}
	tsize := s.gtes * 4
	off := int64(s.gd[gdi]) * SectorSize
	if off+tsize > s.f.Size() {
		return nil, s.errAt(s.gdOff+4*gdi, s.gd[gdi], "grain table %d lies past the end of the file", gdi)
	}
	// Extend to the following tables that sit right after this one.
	n := int64(1)
	for n < gtBatch && gdi+n < int64(len(s.gd)) && int64(s.gd[gdi+n])*SectorSize == off+n*tsize &&
		off+(n+1)*tsize <= s.f.Size() {
		n++
	}
	raw := make([]byte, n*tsize)
	if _, err := s.f.ReadAt(raw, off); err != nil {
		return nil, fmt.Errorf("%s: reading grain table %d at %d: %w", s.name, gdi, off, err)
	}
	// Each table is cached on its own so an entry never pins its batch.
	var first []byte
	for i := n - 1; i >= 0; i-- {
		t := bytes.Clone(raw[i*tsize : (i+1)*tsize])
		s.img.gtCache.Put(gtKey{s.index, gdi + i}, t)
		first = t
	}
	return first, nil
}

// mapAt describes the run at byte rel of the extent (spec "Grain Table and
// Grain Directory"): unallocated grains fall through to the parent, zeroed
// grains read as zeros.
func (s *sparseExtent) mapAt(rel int64) (runs.Run, error) {
	grain := rel / s.grainSize
	in := rel % s.grainSize
	gdi := grain / s.gtes
	if gdi >= int64(len(s.gd)) {
		return runs.Run{Kind: runs.Backing, Len: s.capacity - rel}, nil
	}
	if s.gd[gdi] == 0 {
		return runs.Run{Kind: runs.Backing, Len: (gdi+1)*s.gtes*s.grainSize - rel}, nil
	}
	t, err := s.table(gdi)
	if err != nil {
		return runs.Run{}, err
	}
	gi := grain % s.gtes
	gte := gtEntry(t, gi)
	// Same-kind neighbours of unallocated or zeroed grains make one run.
	same := func(kind runs.Kind) runs.Run {
		n := int64(1)
		for gi+n < s.gtes && gtEntry(t, gi+n) == gte {
			n++
		}
		return runs.Run{Kind: kind, Len: n*s.grainSize - in}
	}
	switch {
	case gte == 0:
		return same(runs.Backing), nil
	case gte == GTEZeroed && s.zeroGrain:
		return same(runs.Zero), nil
	}
	off := int64(gte) * SectorSize
	if !s.cowd && uint64(gte) < s.header.OverHead {
		return runs.Run{}, s.errAt(int64(s.gd[gdi])*SectorSize+4*gi, gte, "grain %d points into the extent's metadata", grain)
	}
	if off >= s.f.Size() {
		return runs.Run{}, s.errAt(int64(s.gd[gdi])*SectorSize+4*gi, gte, "grain %d lies past the end of the file", grain)
	}
	if !s.compressed {
		return runs.Run{Kind: runs.Data, Len: s.grainSize - in, File: s.f, Off: off + in}, nil
	}
	return runs.Run{Kind: runs.Decoded, Len: s.grainSize - in, Read: func(p []byte, skip int64) error {
		if in+skip == 0 && int64(len(p)) == s.grainSize {
			// A whole grain (sequential reads, copies): inflate in place
			// and leave the cache to partial reads.
			return s.inflateInto(p, grain, off)
		}
		g, err := s.inflate(grain, off)
		if err != nil {
			return err
		}
		copy(p, g[in+skip:])
		return nil
	}}, nil
}

// readBufs recycles the buffers compressed grains are read into.
var readBufs = sync.Pool{New: func() any { return new([]byte) }}

// zlibReaders recycles inflaters: a new one per grain costs more in
// allocation and garbage collection than the inflating.
var zlibReaders sync.Pool

func zlibReader(data []byte) (io.ReadCloser, error) {
	if zr, ok := zlibReaders.Get().(io.ReadCloser); ok {
		if err := zr.(zlib.Resetter).Reset(bytes.NewReader(data), nil); err != nil {
			return nil, err
		}
		return zr, nil
	}
	return zlib.NewReader(bytes.NewReader(data))
}

// gtEntry is entry i of a raw grain table.
func gtEntry(t []byte, i int64) uint32 { return binary.LittleEndian.Uint32(t[4*i:]) }

type grainKey struct {
	ext   int
	grain int64
}

// inflate returns the decompressed grain stored at off, through the cache.
func (s *sparseExtent) inflate(grain, off int64) ([]byte, error) {
	key := grainKey{s.index, grain}
	if g, ok := s.img.grainCache.Get(key); ok {
		return g, nil
	}
	g := make([]byte, s.grainSize)
	if err := s.inflateInto(g, grain, off); err != nil {
		return nil, err
	}
	s.img.grainCache.Put(key, g)
	return g, nil
}

// inflateInto decompresses the grain stored at off into g (grainSize bytes)
// (spec "Compressed Grains": a grain marker with the compressed length, then
// deflate data in a zlib stream).
func (s *sparseExtent) inflateInto(g []byte, grain, off int64) error {
	fsize := s.f.Size()
	// One pread fetches the marker and, usually, all the compressed data
	// (it is rarely larger than the grain).
	bufp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bufp)
	want := min(GrainMarkerSize+s.grainSize, fsize-off)
	if int64(cap(*bufp)) < want {
		*bufp = make([]byte, want)
	}
	buf := (*bufp)[:want]
	n, err := s.f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: reading compressed grain at %d: %w", s.name, off, err)
	}
	buf = buf[:n]
	data := buf
	if s.markers {
		if len(buf) < GrainMarkerSize {
			return s.errAt(off, len(buf), "grain marker past the end of the file")
		}
		size := int64(binary.LittleEndian.Uint32(buf[8:]))
		if size == 0 || size > 2*s.grainSize || off+GrainMarkerSize+size > fsize {
			return s.errAt(off, size, "bad compressed grain length")
		}
		if GrainMarkerSize+size <= int64(len(buf)) {
			data = buf[GrainMarkerSize : GrainMarkerSize+size]
		} else {
			data = make([]byte, size)
			if _, err := s.f.ReadAt(data, off+GrainMarkerSize); err != nil {
				return fmt.Errorf("%s: reading compressed grain at %d: %w", s.name, off, err)
			}
		}
	} else if int64(len(buf)) < min(2*s.grainSize, fsize-off) {
		// No marker gives the length: take up to two grains, as qemu.
		data = make([]byte, min(2*s.grainSize, fsize-off))
		n, err := s.f.ReadAt(data, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: reading compressed grain at %d: %w", s.name, off, err)
		}
		data = data[:n]
	}
	zr, err := zlibReader(data)
	if err != nil {
		return s.errAt(off, nil, "compressed grain %d: %v", grain, err)
	}
	defer zlibReaders.Put(zr)
	n, err = io.ReadFull(zr, g)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return s.errAt(off, nil, "compressed grain %d: %v", grain, err)
	}
	// The last grain may be short (qemu compresses only the bytes inside
	// the capacity); anything the disk can read must be there.
	if want := min(s.grainSize, s.capacity-grain*s.grainSize); int64(n) < want {
		return s.errAt(off, n, "compressed grain %d inflates to %d bytes, want %d", grain, n, want)
	}
	if n == len(g) {
		var one [1]byte
		if m, _ := zr.Read(one[:]); m > 0 {
			return s.errAt(off, nil, "compressed grain %d inflates to more than %d bytes", grain, s.grainSize)
		}
	}
	clear(g[n:])
	return nil
}
