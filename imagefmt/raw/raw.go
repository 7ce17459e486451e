// Package raw reads raw disk images: the file is the disk. Holes in sparse
// files are found with SEEK_DATA/SEEK_HOLE so copies can skip them.
package raw

import (
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// Image is a raw image.
type Image struct {
	f    vdisk.File
	size int64
	info vdisk.Info

	// seekMu serializes SEEK_DATA/SEEK_HOLE, which move the shared file
	// offset. ReadAt (pread) does not use the offset.
	seekMu sync.Mutex

	mapOnce sync.Once
	mapped  []byte
	mapErr  error
}

var _ vdisk.Image = (*Image)(nil)

// Open returns f as a raw image of f.Size() bytes. The image owns f.
func Open(f vdisk.File, opts vdisk.OpenOptions) (*Image, error) {
	name := opts.Name
	if name == "" {
		name = f.Name()
	}
	img := &Image{f: f, size: f.Size()}
	img.info = vdisk.Info{
		Filename:       name,
		Format:         "raw",
		VirtualSize:    img.size,
		FileSize:       img.size,
		AllocatedBytes: allocated(f),
	}
	return img, nil
}

func allocated(f vdisk.File) int64 {
	if of, ok := f.(*vdisk.OSFile); ok {
		var st unix.Stat_t
		if unix.Fstat(int(of.Fd()), &st) == nil {
			return st.Blocks * 512
		}
	}
	return f.Size()
}

func (img *Image) Size() int64       { return img.size }
func (img *Image) Info() *vdisk.Info { return &img.info }

// Close unmaps the image (see Map) and closes its file.
func (img *Image) Close() error {
	if img.mapped != nil {
		unix.Munmap(img.mapped)
		img.mapped = nil
	}
	return img.f.Close()
}

// Map returns the whole image mapped read-only, so that a caller that only
// looks at the bytes (a backup hashing and storing them) reads the page
// cache without copying it first. The mapping lives until Close; slices of
// it must not be used after. A file truncated under the mapping faults on
// access (SIGBUS): callers run with debug.SetPanicOnFault and recover.
func (img *Image) Map() ([]byte, error) {
	img.mapOnce.Do(func() {
		of, ok := img.f.(*vdisk.OSFile)
		switch {
		case !ok:
			img.mapErr = errors.New("raw: not a file")
		case img.size == 0 || int64(int(img.size)) != img.size:
			img.mapErr = errors.New("raw: size cannot be mapped")
		default:
			img.mapped, img.mapErr = unix.Mmap(int(of.Fd()), 0, int(img.size), unix.PROT_READ, unix.MAP_SHARED)
			if img.mapErr == nil {
				unix.Madvise(img.mapped, unix.MADV_SEQUENTIAL)
			}
		}
	})
	return img.mapped, img.mapErr
}

// ReadAt reads the file; bytes past the end read as EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("raw: negative offset")
	}
	if off >= img.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > img.size-off {
		p = p[:img.size-off]
	}
	n, err := img.f.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// Extents reports data and holes. Holes of a raw file are Unallocated.
// Without SEEK_DATA support the whole range is Data.
func (img *Image) Extents(off, length int64) ([]vdisk.Extent, error) {
	if off < 0 || length < 0 {
		return nil, errors.New("raw: negative range")
	}
	end := min(off+length, img.size)
	if off >= end {
		return nil, nil
	}
	of, ok := img.f.(*vdisk.OSFile)
	if !ok {
		return []vdisk.Extent{{Off: off, Len: end - off, Kind: vdisk.Data}}, nil
	}
	img.seekMu.Lock()
	defer img.seekMu.Unlock()
	fd := int(of.Fd())
	var out []vdisk.Extent
	add := func(o, e int64, k vdisk.ExtentKind) {
		if e <= o {
			return
		}
		layer := 0
		if k == vdisk.Unallocated {
			layer = -1
		}
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].Off+out[n-1].Len == o {
			out[n-1].Len += e - o
			return
		}
		out = append(out, vdisk.Extent{Off: o, Len: e - o, Kind: k, Layer: layer})
	}
	pos := off
	for pos < end {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) { // no data after pos
				add(pos, end, vdisk.Unallocated)
				return out, nil
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				add(pos, end, vdisk.Data)
				return out, nil
			}
			return nil, &os.PathError{Op: "seek_data", Path: of.Name(), Err: err}
		}
		data = min(data, end)
		add(pos, data, vdisk.Unallocated)
		if data >= end {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, &os.PathError{Op: "seek_hole", Path: of.Name(), Err: err}
		}
		hole = min(hole, end)
		add(data, hole, vdisk.Data)
		pos = hole
	}
	return out, nil
}
