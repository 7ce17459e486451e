package ntfs

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"www.velocidex.com/golang/go-ntfs/parser"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// stream is the content of one attribute (a $DATA stream, $INDEX_ALLOCATION,
// $ATTRIBUTE_LIST, the $MFT itself): resident bytes, or runs of clusters,
// plain, sparse or compressed. It is an io.ReaderAt with exact EOF.
type stream struct {
	f    *FS
	ino  uint64
	off  int64 // volume offset of the record holding it, for errors
	size int64
	init int64 // bytes past this read as zeros

	resident []byte
	runs     []run

	compressed bool
	cuShift    uint8
	encrypted  bool

	mu    sync.Mutex
	units []cachedUnit // recently decompressed compression units
}

type cachedUnit struct {
	idx  int64
	data []byte // nil: all zeros
}

const cachedUnits = 4

var _ fsys.File = (*stream)(nil)

// newStream builds the stream of an attribute from its extents.
func (f *FS) newStream(ino uint64, extents []*attr) (*stream, error) {
	if len(extents) == 0 {
		return nil, f.corrupt(ino, -1, "attribute has no extents")
	}
	a := extents[0]
	s := &stream{f: f, ino: ino, off: a.off}
	if a.resident {
		if len(extents) > 1 {
			return nil, f.corrupt(ino, a.off, "resident attribute %#x %q appears %d times", a.typ, a.name, len(extents))
		}
		s.resident = a.value
		s.size, s.init = int64(len(a.value)), int64(len(a.value))
		return s, nil
	}
	ext := append([]*attr(nil), extents...)
	sort.Slice(ext, func(i, j int) bool { return ext[i].lowVCN < ext[j].lowVCN })
	a = ext[0]
	if a.lowVCN != 0 {
		return nil, f.corrupt(ino, a.off, "attribute %#x %q has no extent at VCN 0", a.typ, a.name)
	}
	s.size, s.init = a.dataSize, a.initSize
	s.encrypted = a.flags&attrEncrypted != 0
	if a.flags&attrCompressionMask != 0 {
		if a.cuShift == 0 || a.cuShift > 8 || f.clusterSize<<a.cuShift > 1<<20 {
			return nil, f.corrupt(ino, a.off, "compressed attribute with compression unit 2^%d clusters", a.cuShift)
		}
		s.compressed, s.cuShift = true, a.cuShift
	}
	next := int64(0)
	for _, e := range ext {
		if e.resident {
			return nil, f.corrupt(ino, e.off, "attribute %#x %q mixes resident and non-resident extents", a.typ, a.name)
		}
		if e.lowVCN != next {
			return nil, f.corrupt(ino, e.off, "attribute %#x %q: extent starts at VCN %d, want %d", a.typ, a.name, e.lowVCN, next)
		}
		runs, err := decodeRuns(e.pairs, e.lowVCN, e.highVCN, f.clusters)
		if err != nil {
			return nil, f.corrupt(ino, e.off, "attribute %#x %q: %v", a.typ, a.name, err)
		}
		s.runs = append(s.runs, runs...)
		next = e.highVCN + 1
	}
	return s, nil
}

func (s *stream) Size() int64 { return s.size }

// volOff maps a stream offset to a volume offset (-1 in a hole or for
// resident data), for error messages.
func (s *stream) volOff(off int64) int64 {
	if s.resident != nil || s.compressed {
		return s.off
	}
	cs := s.f.clusterSize
	if r := s.runAt(off / cs); r != nil && r.lcn >= 0 {
		return r.lcn*cs + off - r.vcn*cs
	}
	return -1
}

// runAt returns the run holding cluster vcn, or nil past the runs.
func (s *stream) runAt(vcn int64) *run {
	i := sort.Search(len(s.runs), func(i int) bool { return s.runs[i].vcn+s.runs[i].n > vcn })
	if i < len(s.runs) && s.runs[i].vcn <= vcn {
		return &s.runs[i]
	}
	return nil
}

// ReadAt reads stream bytes; a read reaching the end returns io.EOF.
func (s *stream) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: inode %d: negative offset %d", s.f.name, s.ino, off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	if s.encrypted {
		return 0, fmt.Errorf("%s: inode %d: content is encrypted (EFS): %w", s.f.name, s.ino, fsys.ErrUnsupported)
	}
	var eof error
	if rem := s.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	n := len(p)
	// Past the initialized size: zeros.
	if end := off + int64(len(p)); end > s.init {
		z := p[max(0, s.init-off):]
		clear(z)
		p = p[:len(p)-len(z)]
	}
	var err error
	switch {
	case len(p) == 0:
	case s.resident != nil:
		copy(p, s.resident[off:])
	case s.compressed:
		err = s.readCompressed(p, off)
	default:
		err = s.readPlain(p, off)
	}
	if err != nil {
		return 0, err
	}
	return n, eof
}

// readPlain reads p (inside the initialized size) of an uncompressed
// stream straight from the volume.
func (s *stream) readPlain(p []byte, off int64) error {
	cs := s.f.clusterSize
	for len(p) > 0 {
		r := s.runAt(off / cs)
		if r == nil {
			return s.f.corrupt(s.ino, s.off, "no run maps stream offset %d (allocation ends before the initialized size)", off)
		}
		n := min(int64(len(p)), (r.vcn+r.n)*cs-off)
		if r.lcn < 0 {
			clear(p[:n])
		} else if err := s.f.readVolume(s.ino, p[:n], r.lcn*cs+off-r.vcn*cs); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// readVolume reads exactly len(p) volume bytes at off.
func (f *FS) readVolume(ino uint64, p []byte, off int64) error {
	n, err := f.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return f.corrupt(ino, off+int64(n), "data past the end of the volume")
	}
	return fmt.Errorf("%s: inode %d: reading at byte %d: %w", f.name, ino, off, err)
}

func (s *stream) readCompressed(p []byte, off int64) error {
	cu := s.f.clusterSize << s.cuShift
	for len(p) > 0 {
		idx := off / cu
		data, err := s.unit(idx)
		if err != nil {
			return err
		}
		in := off - idx*cu
		n := min(int64(len(p)), cu-in)
		if data == nil {
			clear(p[:n])
		} else {
			copy(p[:n], data[in:in+n])
		}
		p, off = p[n:], off+n
	}
	return nil
}

// unit returns compression unit idx decompressed (nil if all zeros). A
// unit whose clusters are all allocated is stored plain; one with clusters
// allocated then sparse holds LZNT1 data in the allocated ones; an all
// sparse unit is zeros (ntfs-3g compress.c, ntfs_compressed_attr_pread).
func (s *stream) unit(idx int64) ([]byte, error) {
	s.mu.Lock()
	for i, u := range s.units {
		if u.idx == idx {
			s.units = append(append([]cachedUnit{u}, s.units[:i]...), s.units[i+1:]...)
			s.mu.Unlock()
			return u.data, nil
		}
	}
	s.mu.Unlock()

	cs := s.f.clusterSize
	per := int64(1) << s.cuShift
	vcn0 := idx * per
	var raw []byte
	allocated := int64(0)
	for v := vcn0; v < vcn0+per; {
		r := s.runAt(v)
		if r == nil {
			break // past the runs: treated as sparse
		}
		n := min(r.vcn+r.n, vcn0+per) - v
		if r.lcn >= 0 {
			b := make([]byte, n*cs)
			if err := s.f.readVolume(s.ino, b, (r.lcn+v-r.vcn)*cs); err != nil {
				return nil, err
			}
			raw = append(raw, b...)
			allocated += n
		}
		v += n
	}
	var data []byte
	switch {
	case allocated == 0:
	case allocated == per:
		data = raw
	default:
		out, err := lznt1(raw)
		if err != nil {
			return nil, s.f.corrupt(s.ino, s.off, "compression unit %d: %v", idx, err)
		}
		if int64(len(out)) > per*cs {
			return nil, s.f.corrupt(s.ino, s.off, "compression unit %d decompresses to %d bytes, more than %d", idx, len(out), per*cs)
		}
		data = make([]byte, per*cs)
		copy(data, out)
	}
	s.mu.Lock()
	s.units = append([]cachedUnit{{idx, data}}, s.units...)
	if len(s.units) > cachedUnits {
		s.units = s.units[:cachedUnits]
	}
	s.mu.Unlock()
	return data, nil
}

// lznt1 decompresses with go-ntfs's LZNT1, which must not take the
// process down on hostile bytes.
func lznt1(b []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("LZNT1 decompressor panicked: %v", r)
		}
	}()
	return parser.LZNT1Decompress(b)
}

// Extents lists the ranges that hold data (not holes, not past the
// initialized size).
func (s *stream) Extents() ([]fsys.Range, error) {
	if s.resident != nil || s.size == 0 {
		return nil, nil
	}
	cs := s.f.clusterSize
	var out []fsys.Range
	add := func(off, n int64) {
		end := min(off+n, s.init)
		if end <= off {
			return
		}
		if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == off {
			out[k-1].Len = end - out[k-1].Off
			return
		}
		out = append(out, fsys.Range{Off: off, Len: end - off})
	}
	if s.compressed {
		cu := cs << s.cuShift
		for idx := int64(0); idx*cu < s.init; idx++ {
			vcn0 := idx << s.cuShift
			for v := vcn0; v < vcn0+1<<s.cuShift; {
				r := s.runAt(v)
				if r == nil {
					break
				}
				if r.lcn >= 0 {
					add(idx*cu, cu)
					break
				}
				v = r.vcn + r.n
			}
		}
	} else {
		for _, r := range s.runs {
			if r.lcn >= 0 {
				add(r.vcn*cs, r.n*cs)
			}
		}
	}
	if out == nil {
		out = []fsys.Range{}
	}
	return out, nil
}
