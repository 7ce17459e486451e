package ntfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// A small volume for damage tests and fuzz seeds: a few files, a
// directory big enough for an index block, a stream, a compressed file.
func buildSmall(dir string) error {
	img := filepath.Join(dir, "img")
	if err := testimages.Truncate(img, 8<<20); err != nil {
		return err
	}
	if _, err := testimages.Run("mkntfs", "-F", "-Q", "-q", "-c", "4096", img); err != nil {
		return err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "no_detach", img, mnt)
	if err != nil {
		return err
	}
	err = func() error {
		if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
			return err
		}
		for i := range 150 {
			if err := os.WriteFile(filepath.Join(mnt, "dir", fmt.Sprintf("file with a longish name %03d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(mnt, "data"), bytes.Repeat([]byte("data "), 10000), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(mnt, "small"), []byte("small"), 0o644)
	}()
	if uerr := umount(); err == nil {
		err = uerr
	}
	os.Remove(mnt)
	return err
}

func smallImage(t testing.TB) []byte {
	t.Helper()
	testimages.RequireTools(t, "mkntfs", "ntfs-3g")
	testimages.RequireRoot(t)
	dir := testimages.Get(t, "fsread-ntfs-small", "v1", buildSmall)
	b, err := os.ReadFile(filepath.Join(dir, "img"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openBytes(b []byte) (*FS, error) {
	return Open(bytes.NewReader(b), int64(len(b)), Options{Name: "t"})
}

func mustOpenBytes(t testing.TB, b []byte) *FS {
	t.Helper()
	f, err := openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func isCorrupt(err error) bool {
	var ce *fsys.CorruptError
	return errors.As(err, &ce) && errors.Is(err, fsys.ErrCorrupt)
}

func TestBadBootSector(t *testing.T) {
	good := make([]byte, 512)
	copy(good[3:], "NTFS    ")
	binary.LittleEndian.PutUint16(good[11:], 512)
	good[13] = 8
	binary.LittleEndian.PutUint64(good[0x28:], 16384)
	binary.LittleEndian.PutUint64(good[0x30:], 4)
	good[0x40] = 0xF6 // 1024-byte records
	good[510], good[511] = 0x55, 0xAA
	cases := map[string]func(b []byte){
		"garbage":                 func(b []byte) { copy(b, bytes.Repeat([]byte{0xA5}, 512)) },
		"zeros":                   func(b []byte) { clear(b) },
		"no signature":            func(b []byte) { b[511] = 0 },
		"zero bytes per sector":   func(b []byte) { binary.LittleEndian.PutUint16(b[11:], 0) },
		"3 sectors per cluster":   func(b []byte) { b[13] = 3 },
		"2^200 sectors/cluster":   func(b []byte) { b[13] = 0x38 + 0x80 },
		"zero record size":        func(b []byte) { b[0x40] = 0 },
		"2^-100 record size":      func(b []byte) { b[0x40] = 0x9C },
		"negative sector count":   func(b []byte) { binary.LittleEndian.PutUint64(b[0x28:], 1<<63) },
		"MFT past the end":        func(b []byte) { binary.LittleEndian.PutUint64(b[0x30:], 1<<40) },
		"MFT in a zeroed area":    func(b []byte) {},
		"record bigger than 64K":  func(b []byte) { b[0x40] = 0x40 },
		"truncated boot sector":   nil,
		"cluster count overflows": func(b []byte) { binary.LittleEndian.PutUint64(b[0x28:], 1<<62-1) },
	}
	for name, patch := range cases {
		t.Run(name, func(t *testing.T) {
			b := append(append([]byte(nil), good...), make([]byte, 64<<10)...)
			if patch == nil {
				b = b[:300]
			} else {
				patch(b)
			}
			_, err := openBytes(b)
			if !isCorrupt(err) {
				t.Fatalf("got %v, want a CorruptError", err)
			}
			if !strings.HasPrefix(err.Error(), "ntfs t") || !strings.Contains(err.Error(), "at byte") {
				t.Errorf("error %q does not name the volume and offset", err)
			}
		})
	}
}

// recordOff is the volume offset of MFT record ino.
func recordOff(t testing.TB, f *FS, ino uint64) int64 {
	off := f.mft.volOff(int64(ino) * f.recSize)
	if off < 0 {
		t.Fatalf("record %d has no volume offset", ino)
	}
	return off
}

func TestFixupMismatch(t *testing.T) {
	b := smallImage(t)
	f := mustOpenBytes(t, b)
	ino, err := f.Lookup(f.Root(), "data")
	if err != nil {
		t.Fatal(err)
	}
	off := recordOff(t, f, ino)
	b[off+510] ^= 0xFF // torn write in the record's first sector
	f = mustOpenBytes(t, b)
	_, err = f.Stat(ino)
	if !isCorrupt(err) || !strings.Contains(err.Error(), "fixup") || !strings.Contains(err.Error(), fmt.Sprintf("inode %d", ino)) {
		t.Fatalf("Stat: %v", err)
	}
	// The rest reads.
	m, err := testimages.ScanFS(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Entries {
		if (e.Err != "") != (e.Path == "data") {
			t.Errorf("%s: error %q", e.Path, e.Err)
		}
	}
}

func TestCorruptIndexBlock(t *testing.T) {
	b := smallImage(t)
	f := mustOpenBytes(t, b)
	dir, err := f.Lookup(f.Root(), "dir")
	if err != nil {
		t.Fatal(err)
	}
	in, err := f.inode(dir)
	if err != nil || len(in.i30alloc) == 0 {
		t.Fatalf("dir has no index allocation: %v", err)
	}
	s, err := f.newStream(dir, in.i30alloc)
	if err != nil {
		t.Fatal(err)
	}
	for name, patch := range map[string]func(p []byte){
		"magic": func(p []byte) { copy(p, "XXXX") },
		"fixup": func(p []byte) { p[1022] ^= 1 },
		"entry length": func(p []byte) {
			binary.LittleEndian.PutUint16(p[0x18+int(binary.LittleEndian.Uint32(p[0x18:]))+8:], 0xFFF0)
		},
		"self loop": func(p []byte) {},
	} {
		t.Run(name, func(t *testing.T) {
			c := append([]byte(nil), b...)
			off := s.volOff(0)
			patch(c[off : off+4096])
			f := mustOpenBytes(t, c)
			_, err := f.ReadDir(dir)
			if name == "self loop" {
				return // unpatched: must read
			}
			if !isCorrupt(err) {
				t.Fatalf("ReadDir: %v", err)
			}
			if _, err := f.ReadDir(f.Root()); err != nil {
				t.Errorf("root: %v", err)
			}
		})
	}
}

func TestDirtyVolume(t *testing.T) {
	b := smallImage(t)
	f := mustOpenBytes(t, b)
	if len(f.Warnings()) != 0 {
		t.Fatalf("clean volume warns: %q", f.Warnings())
	}
	off := recordOff(t, f, mftRecordVolume)
	rec := b[off : off+f.recSize]
	pos := int(binary.LittleEndian.Uint16(rec[20:]))
	for binary.LittleEndian.Uint32(rec[pos:]) != atVolumeInformation {
		l := int(binary.LittleEndian.Uint32(rec[pos+4:]))
		if l == 0 || binary.LittleEndian.Uint32(rec[pos:]) == atEnd {
			t.Fatal("no $VOLUME_INFORMATION")
		}
		pos += l
	}
	v := pos + int(binary.LittleEndian.Uint16(rec[pos+20:]))
	rec[v+10] |= 1 // VOLUME_IS_DIRTY
	f = mustOpenBytes(t, b)
	w := f.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "dirty") {
		t.Errorf("warnings %q", w)
	}
	if _, err := testimages.ScanFS(f); err != nil {
		t.Error(err)
	}
}

func TestReadAtEOF(t *testing.T) {
	f := mustOpenBytes(t, smallImage(t))
	for _, name := range []string{"data", "small"} {
		ino, err := f.Lookup(f.Root(), name)
		if err != nil {
			t.Fatal(err)
		}
		fl, err := f.Open(ino)
		if err != nil {
			t.Fatal(err)
		}
		size := fl.Size()
		buf := make([]byte, 10)
		if n, err := fl.ReadAt(buf, size-4); n != 4 || err != io.EOF {
			t.Errorf("%s: across EOF %d %v", name, n, err)
		}
		if n, err := fl.ReadAt(buf, size); n != 0 || err != io.EOF {
			t.Errorf("%s: at EOF %d %v", name, n, err)
		}
		if n, err := fl.ReadAt(buf[:4], size-4); n != 4 || err != nil {
			t.Errorf("%s: up to EOF %d %v", name, n, err)
		}
	}
}
