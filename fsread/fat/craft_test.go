package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// tiny is a hand-made FAT12 volume: 512-byte sectors and clusters, one
// reserved sector, two FATs of 2 sectors, 32 root entries (2 sectors), 2048
// sectors in all. Tests patch its bytes to make damaged volumes.
type tiny struct{ b []byte }

const (
	tinyFAT  = 512
	tinyRoot = 512 + 2*2*512
	tinyData = tinyRoot + 2*512
)

func newTiny() *tiny {
	t := &tiny{b: make([]byte, 2048*512)}
	b := t.b
	copy(b[0:], []byte{0xEB, 0x3C, 0x90})
	copy(b[3:], "MSWIN4.1")
	binary.LittleEndian.PutUint16(b[11:], 512) // BytsPerSec
	b[13] = 1                                  // SecPerClus
	binary.LittleEndian.PutUint16(b[14:], 1)   // RsvdSecCnt
	b[16] = 2                                  // NumFATs
	binary.LittleEndian.PutUint16(b[17:], 32)  // RootEntCnt
	binary.LittleEndian.PutUint16(b[19:], 2048)
	b[21] = 0xF8
	binary.LittleEndian.PutUint16(b[22:], 2) // FATSz16
	b[38] = 0x29
	binary.LittleEndian.PutUint32(b[39:], 0x1234ABCD)
	copy(b[43:], "TINY       ")
	copy(b[54:], "FAT12   ")
	b[510], b[511] = 0x55, 0xAA
	t.setFAT(0, 0xFF8)
	t.setFAT(1, 0xFFF)
	return t
}

func (t *tiny) setFAT(c, v uint32) {
	for _, base := range []int{tinyFAT, tinyFAT + 1024} {
		o := base + int(c+c/2)
		old := binary.LittleEndian.Uint16(t.b[o:])
		if c&1 != 0 {
			old = old&0x000F | uint16(v<<4)
		} else {
			old = old&0xF000 | uint16(v&0xFFF)
		}
		binary.LittleEndian.PutUint16(t.b[o:], old)
	}
}

// entry writes an 8.3 entry in slot i of the directory at off.
func (t *tiny) entry(off, i int, name string, attr uint8, cluster uint32, size uint32) {
	e := t.b[off+32*i : off+32*i+32]
	copy(e[0:11], name)
	e[11] = attr
	binary.LittleEndian.PutUint16(e[24:], 0x5265) // 2021-03-05
	binary.LittleEndian.PutUint16(e[22:], 0x60A4) // 12:05:08
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
}

// lfn writes long name slots for name before an 8.3 entry: slots i..i+k-1
// of the directory at off; sum is the checksum to store.
func (t *tiny) lfn(off, i int, name string, sum uint8) int {
	u := []uint16{}
	for _, r := range name {
		u = append(u, uint16(r))
	}
	u = append(u, 0)
	for len(u)%13 != 0 {
		u = append(u, 0xFFFF)
	}
	k := len(u) / 13
	for s := 0; s < k; s++ {
		ord := k - s
		e := t.b[off+32*(i+s) : off+32*(i+s)+32]
		e[0] = byte(ord)
		if s == 0 {
			e[0] |= lfnLast
		}
		e[11] = attrLongName
		e[13] = sum
		part := u[(ord-1)*13 : ord*13]
		for j := 0; j < 5; j++ {
			binary.LittleEndian.PutUint16(e[1+2*j:], part[j])
		}
		for j := 0; j < 6; j++ {
			binary.LittleEndian.PutUint16(e[14+2*j:], part[5+j])
		}
		for j := 0; j < 2; j++ {
			binary.LittleEndian.PutUint16(e[28+2*j:], part[11+j])
		}
	}
	return k
}

func clusterOff(c int) int { return tinyData + (c-2)*512 }

// populated returns a tiny volume with a few files: a long-named file
// spanning 3 clusters, an empty file, a subdirectory with a file, a
// deleted entry and a volume label.
func populated() *tiny {
	t := newTiny()
	name := [11]byte{}
	copy(name[:], "LONGNA~1TXT")
	k := t.lfn(tinyRoot, 0, "Long name file.txt", shortNameChecksum(&name))
	t.entry(tinyRoot, k, "LONGNA~1TXT", attrArchive, 2, 1300)
	for c := 2; c <= 4; c++ {
		copy(t.b[clusterOff(c):clusterOff(c)+512], bytes.Repeat([]byte{byte('a' + c)}, 512))
	}
	t.setFAT(2, 3)
	t.setFAT(3, 4)
	t.setFAT(4, 0xFFF)
	t.entry(tinyRoot, k+1, "EMPTY      ", attrArchive, 0, 0)
	t.entry(tinyRoot, k+2, "SUB        ", attrDirectory, 5, 0)
	t.setFAT(5, 0xFFF)
	t.entry(clusterOff(5), 0, ".          ", attrDirectory, 5, 0)
	t.entry(clusterOff(5), 1, "..         ", attrDirectory, 0, 0)
	t.entry(clusterOff(5), 2, "INNER   TXT", attrArchive, 6, 5)
	t.b[clusterOff(5)+2*32+12] = ntLowerBase | ntLowerExt
	copy(t.b[clusterOff(6):], "inner")
	t.setFAT(6, 0xFFF)
	t.entry(tinyRoot, k+3, "GONE    TXT", attrArchive, 7, 3)
	t.b[tinyRoot+32*(k+3)] = slotDeleted
	t.entry(tinyRoot, k+4, "MYVOLUME   ", attrVolumeID, 0, 0)
	return t
}

func openTiny(t *testing.T, b []byte) *FS {
	t.Helper()
	f, err := Open(bytes.NewReader(b), int64(len(b)), Options{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestTinyVolume(t *testing.T) {
	f := openTiny(t, populated().b)
	if f.geo.kind != fat12 {
		t.Fatalf("kind %d", f.geo.kind)
	}
	if got := f.Info(); got.Label != "MYVOLUME" || got.UUID != "1234-ABCD" || got.Type != "vfat" {
		t.Errorf("info %+v", got)
	}
	fsy := fsys.NewFS(f)
	ents, err := fsy.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "EMPTY,Long name file.txt,SUB" {
		t.Errorf("root lists %s", got)
	}
	b, err := fs.ReadFile(fsy, "Long name file.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(bytes.Repeat([]byte{'c'}, 512), bytes.Repeat([]byte{'d'}, 512)...), bytes.Repeat([]byte{'e'}, 276)...)
	if !bytes.Equal(b, want) {
		t.Errorf("content differs")
	}
	if b, err := fs.ReadFile(fsy, "SUB/inner.txt"); err != nil || string(b) != "inner" {
		t.Errorf("inner.txt: %q %v", b, err)
	}
	// vfat lookups ignore case and find 8.3 aliases.
	for _, p := range []string{"sub/INNER.TXT", "LONGNA~1.TXT", "long NAME file.TXT"} {
		if _, err := fsy.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	st, err := fsy.Stat("SUB")
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*fsys.Stat)
	if s.Nlink != 2 || s.Mode != fsys.S_IFDIR|0o755 || s.Mtime.Format("2006-01-02 15:04:05") != "2021-03-05 12:05:08" {
		t.Errorf("SUB stat %+v", s)
	}
	if err := fstest.TestFS(fsy, "EMPTY", "Long name file.txt", "SUB/inner.txt"); err != nil {
		t.Error(err)
	}
}

func TestLFNChecksumMismatch(t *testing.T) {
	tv := newTiny()
	k := tv.lfn(tinyRoot, 0, "a long name.txt", 0x43) // wrong checksum (the right one is 0x42)
	tv.entry(tinyRoot, k, "ALONGN~1TXT", attrArchive, 0, 0)
	f := openTiny(t, tv.b)
	ents, err := f.ReadDir(rootIno)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name != "ALONGN~1.TXT" {
		t.Errorf("got %+v, want the 8.3 name", ents)
	}
}

func TestLFNOutOfOrder(t *testing.T) {
	tv := newTiny()
	name := [11]byte{}
	copy(name[:], "ABCDEF~1TXT")
	k := tv.lfn(tinyRoot, 0, "abcdefghijklmnopqrstuvwxyz.txt", shortNameChecksum(&name))
	tv.b[tinyRoot+32] = 7 // second slot claims a wrong order
	tv.entry(tinyRoot, k, "ABCDEF~1TXT", attrArchive, 0, 0)
	f := openTiny(t, tv.b)
	ents, err := f.ReadDir(rootIno)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name != "ABCDEF~1.TXT" {
		t.Errorf("got %+v, want the 8.3 name", ents)
	}
}

func TestBadBootSectors(t *testing.T) {
	cases := []struct {
		name  string
		patch func(b []byte)
	}{
		{"no signature", func(b []byte) { b[510] = 0 }},
		{"zero bytes per sector", func(b []byte) { binary.LittleEndian.PutUint16(b[11:], 0) }},
		{"odd bytes per sector", func(b []byte) { binary.LittleEndian.PutUint16(b[11:], 513) }},
		{"zero sectors per cluster", func(b []byte) { b[13] = 0 }},
		{"3 sectors per cluster", func(b []byte) { b[13] = 3 }},
		{"no reserved sectors", func(b []byte) { binary.LittleEndian.PutUint16(b[14:], 0) }},
		{"no FATs", func(b []byte) { b[16] = 0 }},
		{"zero FAT size", func(b []byte) { binary.LittleEndian.PutUint16(b[22:], 0) }},
		{"zero total sectors", func(b []byte) { binary.LittleEndian.PutUint16(b[19:], 0) }},
		{"huge reserved area", func(b []byte) { binary.LittleEndian.PutUint16(b[14:], 0xFFFF) }},
		{"no root entries", func(b []byte) { binary.LittleEndian.PutUint16(b[17:], 0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := populated().b
			c.patch(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)), Options{Name: "p1"})
			var ce *fsys.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, fsys.ErrCorrupt) {
				t.Fatalf("got %v, want a CorruptError", err)
			}
			if !strings.HasPrefix(err.Error(), "vfat p1: at byte ") {
				t.Errorf("error %q does not name volume and offset", err)
			}
		})
	}
}

func TestHugeTotalSectors(t *testing.T) {
	// A BPB claiming 4 G sectors on a 1 MiB volume: it opens (files in the
	// covered part read), warns, and reading past the end is an error.
	b := populated().b
	binary.LittleEndian.PutUint16(b[19:], 0)
	binary.LittleEndian.PutUint32(b[32:], 0xFFFFFFFF)
	binary.LittleEndian.PutUint16(b[22:], 0xFFFF)
	f, err := Open(bytes.NewReader(b), int64(len(b)), Options{Name: "p1"})
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	if len(f.Warnings()) == 0 {
		t.Error("no warning for a volume larger than its image")
	}
	walk(t, f)
}

func TestClusterChainLoop(t *testing.T) {
	tv := populated()
	tv.setFAT(4, 2) // 2 -> 3 -> 4 -> 2
	f := openTiny(t, tv.b)
	// The file needs only 3 clusters: its chain is not followed further.
	if _, err := fs.ReadFile(fsys.NewFS(f), "Long name file.txt"); err != nil {
		t.Errorf("3-cluster file over a looping chain: %v", err)
	}
	// A directory's chain is followed to its end, and loops.
	tv = populated()
	tv.setFAT(5, 5)
	f = openTiny(t, tv.b)
	_, err := f.ReadDir(mustLookup(t, f, rootIno, "SUB"))
	if !errors.Is(err, fsys.ErrCorrupt) || !strings.Contains(err.Error(), "loops") {
		t.Errorf("looping directory: %v", err)
	}
	// The rest still reads.
	if _, err := fs.ReadFile(fsys.NewFS(f), "Long name file.txt"); err != nil {
		t.Error(err)
	}
}

func TestChainPastEnd(t *testing.T) {
	tv := populated()
	tv.setFAT(3, 0xFF0) // beyond the last cluster
	f := openTiny(t, tv.b)
	_, err := fs.ReadFile(fsys.NewFS(f), "Long name file.txt")
	if !errors.Is(err, fsys.ErrCorrupt) || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("got %v", err)
	}
	tv = populated()
	tv.setFAT(3, 0xFFF) // ends after 2 of 3 clusters
	f = openTiny(t, tv.b)
	fl, err := f.Open(mustLookup(t, f, rootIno, "Long name file.txt"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1300)
	n, err := fl.ReadAt(buf, 0)
	if n != 1024 || !errors.Is(err, fsys.ErrCorrupt) {
		t.Errorf("short chain: n=%d err=%v", n, err)
	}
	// A free cluster inside a chain.
	tv = populated()
	tv.setFAT(3, 0)
	f = openTiny(t, tv.b)
	if _, err := fs.ReadFile(fsys.NewFS(f), "Long name file.txt"); !errors.Is(err, fsys.ErrCorrupt) {
		t.Errorf("free cluster in chain: %v", err)
	}
}

func TestReadAtEOF(t *testing.T) {
	f := openTiny(t, populated().b)
	fl, err := f.Open(mustLookup(t, f, rootIno, "Long name file.txt"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := fl.ReadAt(buf, 1250); n != 50 || err != io.EOF {
		t.Errorf("read across EOF: %d %v", n, err)
	}
	if n, err := fl.ReadAt(buf, 1300); n != 0 || err != io.EOF {
		t.Errorf("read at EOF: %d %v", n, err)
	}
	if n, err := fl.ReadAt(buf[:50], 1250); n != 50 || err != nil {
		t.Errorf("read up to EOF: %d %v", n, err)
	}
}

func TestBogusInode(t *testing.T) {
	f := openTiny(t, populated().b)
	for _, ino := range []uint64{0, 2, 5, 1 << 40, tinyRoot/32 + 31} {
		if _, err := f.Stat(ino); !errors.Is(err, fsys.ErrCorrupt) {
			t.Errorf("Stat(%d): %v", ino, err)
		}
	}
}

func TestFATTimes(t *testing.T) {
	// 2021-03-05 12:05:08 and creation at +1.23 s; date 0 computes through
	// as the kernel does (1980-01-01).
	if got := fatTime(0x5265, 0x60A4, 123).Format("2006-01-02 15:04:05.000"); got != "2021-03-05 12:05:09.230" {
		t.Errorf("got %s", got)
	}
	if got := fatTime(0, 0, 0).Format("2006-01-02"); got != "1980-01-01" {
		t.Errorf("got %s", got)
	}
}

func mustLookup(t *testing.T, f *FS, dir uint64, name string) uint64 {
	t.Helper()
	ino, err := f.Lookup(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// walk reads every name, inode and file of f, failing only on panics (the
// caller checks errors it cares about).
func walk(t testing.TB, f *FS) {
	seen := map[uint64]bool{}
	var visit func(ino uint64, depth int)
	visit = func(ino uint64, depth int) {
		if depth > 64 || seen[ino] {
			return
		}
		seen[ino] = true
		st, err := f.Stat(ino)
		if err != nil {
			return
		}
		if st.IsDir() {
			ents, err := f.ReadDir(ino)
			if err != nil {
				return
			}
			for _, e := range ents {
				f.Lookup(ino, e.Name)
				visit(e.Ino, depth+1)
			}
			return
		}
		fl, err := f.Open(ino)
		if err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		for off := int64(0); off < fl.Size(); off += int64(len(buf)) {
			if _, err := fl.ReadAt(buf, off); err != nil {
				break
			}
		}
	}
	visit(f.Root(), 0)
	f.Info()
}
