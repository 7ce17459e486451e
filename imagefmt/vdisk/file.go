package vdisk

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// OSFile is a File on a host file. Its size is read once at open: images are
// not expected to change under a reader.
type OSFile struct {
	*os.File
	size int64
}

// OpenOSFile opens name read-only.
func OpenOSFile(name string) (*OSFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		// Block devices report size 0 in Stat; seek to the end instead.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &OSFile{File: f, size: size}, nil
}

// NewOSFile wraps an already open file.
func NewOSFile(f *os.File, size int64) *OSFile { return &OSFile{File: f, size: size} }

func (f *OSFile) Size() int64 { return f.size }

// bytesFile is a File over a byte slice, for tests and fuzzing.
type bytesFile struct {
	*bytes.Reader
	name string
}

// BytesFile returns a File that reads b; Close does nothing.
func BytesFile(name string, b []byte) File {
	return &bytesFile{Reader: bytes.NewReader(b), name: name}
}

func (b *bytesFile) Close() error { return nil }
func (b *bytesFile) Name() string { return b.name }

// ResolveRelative resolves a name an image records (backing file, data file,
// extent) against the directory of the image that records it, as qemu does.
func ResolveRelative(image, ref string) string {
	if filepath.IsAbs(ref) {
		return ref
	}
	return filepath.Join(filepath.Dir(image), ref)
}
