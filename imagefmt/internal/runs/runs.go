package runs

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Kind says where the bytes of a run come from.
type Kind uint8

const (
	// Backing runs are not stored in this layer: they read from the backing
	// image, or as zeros when there is none.
	Backing Kind = iota
	// Zero runs are recorded as zero in this layer.
	Zero
	// Data runs are stored in File at Off.
	Data
	// Decoded runs are stored in this layer in a form that needs decoding
	// (compressed grains); Read produces their bytes.
	Decoded
)

// Run is a range of the virtual disk that one Map call describes.
type Run struct {
	Kind Kind
	// Len is the length of the run in bytes, > 0. It may reach past the
	// range the caller asked about; the caller clamps.
	Len int64
	// File and Off locate a Data run: virtual offset v of the run is byte
	// Off+(v-start) of File.
	File vdisk.File
	Off  int64
	// Read fills p with the bytes of a Decoded run starting skip bytes into
	// the run.
	Read func(p []byte, skip int64) error
}

// Mapper describes a layer's layout.
type Mapper interface {
	// Map returns the run starting at virtual offset off, 0 <= off < size.
	Map(off int64) (Run, error)
}

// MapperFunc adapts a function to Mapper.
type MapperFunc func(off int64) (Run, error)

func (f MapperFunc) Map(off int64) (Run, error) { return f(off) }

// Layer is one image of a chain: its size, its layout and the image behind
// it.
type Layer struct {
	Name    string // image name for errors
	Size    int64
	Mapper  Mapper
	Backing vdisk.Image // nil: Backing runs read as zeros
}

// ReadAt reads the virtual disk with io.ReaderAt semantics. Consecutive Data
// runs that are contiguous in the same file are read with one pread.
func (l *Layer) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative read offset %d", l.Name, off)
	}
	if off >= l.Size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > l.Size-off {
		p = p[:l.Size-off]
	}
	if err := l.read(p, off); err != nil {
		return 0, err
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}

// pending is a pread being assembled from contiguous Data runs: buf is a
// window of the caller's buffer.
type pending struct {
	file    vdisk.File
	fileOff int64
	start   int64 // index of buf in the caller's buffer
	buf     []byte
}

func (pd *pending) flush() error {
	if pd.file == nil || len(pd.buf) == 0 {
		pd.file = nil
		return nil
	}
	n, err := pd.file.ReadAt(pd.buf, pd.fileOff)
	if err == io.EOF || (err == nil && n < len(pd.buf)) {
		// Bytes past the end of a host file read as zeros, as in qemu:
		// formats check that runs start inside the file; a short final
		// grain or a truncated flat extent is not an error.
		clear(pd.buf[n:])
		err = nil
	}
	pd.file = nil
	if err != nil {
		return err
	}
	return nil
}

func (l *Layer) read(p []byte, off int64) error {
	var pd pending
	var decode []func() error // Decoded runs, run in parallel at the end
	pos := int64(0)
	for pos < int64(len(p)) {
		vo := off + pos
		r, err := l.Mapper.Map(vo)
		if err != nil {
			return err
		}
		if r.Len <= 0 {
			return fmt.Errorf("%s: internal error: empty run at %d", l.Name, vo)
		}
		n := min(r.Len, int64(len(p))-pos)
		chunk := p[pos : pos+n]
		if r.Kind == Data {
			if pd.file != nil && pd.file == r.File && pd.fileOff+int64(len(pd.buf)) == r.Off && pd.start+int64(len(pd.buf)) == pos {
				pd.buf = p[pd.start : pos+n]
			} else {
				if err := pd.flush(); err != nil {
					return err
				}
				pd = pending{file: r.File, fileOff: r.Off, start: pos, buf: chunk}
			}
			pos += n
			continue
		}
		if err := pd.flush(); err != nil {
			return err
		}
		switch r.Kind {
		case Zero:
			clear(chunk)
		case Backing:
			if err := l.readBacking(chunk, vo); err != nil {
				return err
			}
		case Decoded:
			read := r.Read
			decode = append(decode, func() error { return read(chunk, 0) })
		default:
			return fmt.Errorf("%s: internal error: run kind %d", l.Name, r.Kind)
		}
		pos += n
	}
	if err := pd.flush(); err != nil {
		return err
	}
	return parallel(decode)
}

// parallel runs jobs on up to GOMAXPROCS goroutines: decoding compressed
// grains is CPU-bound, and a large read holds many.
func parallel(jobs []func() error) error {
	if len(jobs) <= 1 {
		for _, j := range jobs {
			if err := j(); err != nil {
				return err
			}
		}
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	errs := make([]error, len(jobs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				errs[i] = jobs[i]()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err // the first, not one per grain of a damaged range
		}
	}
	return nil
}

// readBacking reads from the backing image; past its end (a smaller parent)
// the guest sees zeros.
func (l *Layer) readBacking(p []byte, off int64) error {
	if l.Backing == nil {
		clear(p)
		return nil
	}
	n, err := l.Backing.ReadAt(p, off)
	if err == io.EOF {
		clear(p[n:])
		return nil
	}
	return err
}

// Extents reports the allocation of [off, off+length) clamped to Size, with
// the backing image's extents shifted one layer down.
func (l *Layer) Extents(off, length int64) ([]vdisk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, errors.New(l.Name + ": negative extent range")
	}
	end := off + min(length, l.Size)
	if end > l.Size || end < off {
		end = l.Size
	}
	var out []vdisk.Extent
	for pos := off; pos < end; {
		r, err := l.Mapper.Map(pos)
		if err != nil {
			return nil, err
		}
		if r.Len <= 0 {
			return nil, fmt.Errorf("%s: internal error: empty run at %d", l.Name, pos)
		}
		n := min(r.Len, end-pos)
		switch r.Kind {
		case Zero:
			out = Append(out, vdisk.Extent{Off: pos, Len: n, Kind: vdisk.Zero})
		case Data, Decoded:
			out = Append(out, vdisk.Extent{Off: pos, Len: n, Kind: vdisk.Data})
		case Backing:
			if out, err = l.backingExtents(out, pos, n); err != nil {
				return nil, err
			}
		}
		pos += n
	}
	return out, nil
}

func (l *Layer) backingExtents(out []vdisk.Extent, off, n int64) ([]vdisk.Extent, error) {
	if l.Backing == nil || off >= l.Backing.Size() {
		return Append(out, vdisk.Extent{Off: off, Len: n, Kind: vdisk.Unallocated, Layer: -1}), nil
	}
	sub, err := l.Backing.Extents(off, n)
	if err != nil {
		return nil, err
	}
	covered := off
	for _, e := range sub {
		if e.Kind != vdisk.Unallocated {
			e.Layer++
		} else {
			e.Layer = -1
		}
		out = Append(out, e)
		covered = e.Off + e.Len
	}
	if covered < off+n {
		out = Append(out, vdisk.Extent{Off: covered, Len: off + n - covered, Kind: vdisk.Unallocated, Layer: -1})
	}
	return out, nil
}

// Append adds e to a sorted extent list, merging it with the last extent
// when they touch and agree in kind and layer.
func Append(out []vdisk.Extent, e vdisk.Extent) []vdisk.Extent {
	if e.Len <= 0 {
		return out
	}
	if e.Kind == vdisk.Unallocated {
		e.Layer = -1
	}
	if n := len(out); n > 0 {
		last := &out[n-1]
		if last.Kind == e.Kind && last.Layer == e.Layer && last.Off+last.Len == e.Off {
			last.Len += e.Len
			return out
		}
	}
	return append(out, e)
}
