package ntfswrite

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/fsread/ntfs"
	"github.com/vmmount/vmmount/testimages"
)

// The parsers of what the writer reads and rewrites (MFT records, index
// nodes, restart pages, mapping pairs) take any bytes without panicking,
// and what they accept they encode back to something they parse the
// same. The write fuzzers lay bytes over a record or an index block of a
// small valid volume and run a transaction on it.

// smallVolume is a 2 MiB volume: a directory of 120 entries (an index
// block), a resident and a non-resident file, a file with 40 named
// streams (an attribute list).
func smallVolume(f *testing.F) []byte {
	f.Helper()
	dir, err := testimages.Cached("ntfswrite-fuzz", "v2", func(dir string) error {
		return makeNTFS(filepath.Join(dir, "fs.img"), ntfsLayout{"fuzz", 2, 512, 1024}, func(mnt string) error {
			if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
				return err
			}
			for i := range 120 {
				if err := os.WriteFile(filepath.Join(mnt, "dir", fixtureName(i)), nil, 0o644); err != nil {
					return err
				}
			}
			if err := os.WriteFile(filepath.Join(mnt, "small"), []byte("small"), 0o644); err != nil {
				return err
			}
			many := filepath.Join(mnt, "many")
			if err := os.WriteFile(many, []byte("many streams"), 0o644); err != nil {
				return err
			}
			for i := range 40 {
				if err := unix.Setxattr(many, fmt.Sprintf("user.stream%02d", i), []byte(fmt.Sprintf("value of stream %d", i)), 0); err != nil {
					return err
				}
			}
			return os.WriteFile(filepath.Join(mnt, "data"), pattern(20000, 1), 0o644)
		})
	})
	if err != nil {
		if testimages.InCI() {
			f.Fatal(err)
		}
		f.Skip(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "fs.img"))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func openBytes(b []byte) (*FS, error) {
	return Open(bytes.NewReader(b), int64(len(b)), Options{Name: "fuzz"})
}

// overlay reads base with patch laid over it at off.
type overlay struct {
	base  []byte
	off   int64
	patch []byte
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(o.base).ReadAt(p, off)
	lo, hi := max(off, o.off), min(off+int64(n), o.off+int64(len(o.patch)))
	if lo < hi {
		copy(p[lo-off:hi-off], o.patch[lo-o.off:hi-o.off])
	}
	return n, err
}

// transact runs every operation once on a volume; only panics and hangs
// matter.
func transact(dev Device, size int64) {
	f, err := Open(dev, size, Options{Name: "fuzz"})
	if err != nil {
		return
	}
	for _, n := range []string{"dir", "small", "data", "many", "new"} {
		f.Lookup(RootRecord, n)
	}
	dir, err := f.Lookup(RootRecord, "dir")
	if err != nil {
		dir = RootRecord
	}
	for i := range 12 {
		f.Create(dir, fmt.Sprintf("new-%03d-%s", i, fixtureName(i)), Attr{}, bytes.NewReader(pattern(i*97, i)))
	}
	f.Mkdir(RootRecord, "newdir", Attr{})
	for _, n := range []string{"small", "data", "many"} {
		if num, err := f.Lookup(RootRecord, n); err == nil {
			f.Replace(num, bytes.NewReader(pattern(3000, 2)), ReplaceAttr{})
			f.SetAttr(num, ReplaceAttr{})
			f.Stat(num)
		}
	}
	if f.Finish() == nil {
		f.Changes()
	}
}

// FuzzWriteRecord lays arbitrary bytes over an MFT record of a valid
// volume ($MFT, $Volume, $LogFile, the root, a directory, files) and runs
// a transaction.
func FuzzWriteRecord(f *testing.F) {
	b := smallVolume(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	targets := []uint64{recMFT, recVolume, recLogFile, recRoot, recBitmap}
	for _, n := range []string{"dir", "small", "data", "many"} {
		num, err := vol.Lookup(RootRecord, n)
		if err != nil {
			f.Fatal(err)
		}
		targets = append(targets, num)
	}
	recOff := func(num uint64) int64 {
		lcn, _, _ := lcnOf(vol.mftData().runs, int64(num)*vol.recSize/vol.clusterSize)
		return lcn*vol.clusterSize + int64(num)*vol.recSize%vol.clusterSize
	}
	for i, num := range targets {
		off := recOff(num)
		f.Add(uint8(i), append([]byte(nil), b[off:off+vol.recSize]...))
	}
	f.Fuzz(func(t *testing.T, which uint8, rec []byte) {
		off := recOff(targets[int(which)%len(targets)])
		transact(&overlay{base: b, off: off, patch: rec}, int64(len(b)))
	})
}

// FuzzAttrList lays arbitrary bytes over the attribute list of a file
// whose attributes span several records, and runs a transaction.
func FuzzAttrList(f *testing.F) {
	b := smallVolume(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	num, err := vol.Lookup(RootRecord, "many")
	if err != nil {
		f.Fatal(err)
	}
	r, _ := vol.record(num)
	if r.list == nil || r.list.resident {
		f.Fatal("the fixture file has no non-resident attribute list")
	}
	lcn, _, _ := lcnOf(r.list.runs, 0)
	off := lcn * vol.clusterSize
	f.Add(append([]byte(nil), b[off:off+r.list.size]...))
	f.Fuzz(func(t *testing.T, list []byte) {
		transact(&overlay{base: b, off: off, patch: list}, int64(len(b)))
	})
}

// FuzzWriteIndex lays arbitrary bytes over the first index block of a
// directory and runs a transaction that adds to it.
func FuzzWriteIndex(f *testing.F) {
	b := smallVolume(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	dir, err := vol.Lookup(RootRecord, "dir")
	if err != nil {
		f.Fatal(err)
	}
	x, err := vol.openDir(dir)
	if err != nil || x.allocAttr() == nil {
		f.Fatalf("fixture directory without index blocks: %v", err)
	}
	lcn, _, _ := lcnOf(x.allocAttr().runs, 0)
	off := lcn * vol.clusterSize
	f.Add(append([]byte(nil), b[off:off+x.bsize]...))
	f.Fuzz(func(t *testing.T, blk []byte) {
		transact(&overlay{base: b, off: off, patch: blk}, int64(len(b)))
	})
}

// FuzzRecord parses arbitrary bytes as an MFT record; what parses encodes
// back to a record that parses to the same attributes.
func FuzzRecord(f *testing.F) {
	b := smallVolume(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	for _, num := range []uint64{recMFT, recRoot, recVolume, 20} {
		raw, err := vol.recordBytes(num)
		if err == nil {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) != 1024 {
			return
		}
		// Half the inputs get valid fixups, so mutations reach the
		// attributes.
		in := append([]byte(nil), data...)
		if in[0]&1 == 0 {
			copy(in, "FILE")
			le.PutUint16(in[recUSAOfs:], recHeaderSize)
			le.PutUint16(in[recUSACount:], 3)
			protect(in, recHeaderSize, 3, 1)
		}
		r, err := parseRecord(in, 7, 1<<20)
		if err != nil {
			return
		}
		for _, a := range r.attrs {
			a.changed()
		}
		out, err := r.serialize(1024)
		if err != nil {
			return // too big once re-encoded (odd layouts)
		}
		r2, err := parseRecord(out, 7, 1<<20)
		if err != nil {
			t.Fatalf("re-encoded record does not parse: %v", err)
		}
		if len(r2.attrs) != len(r.attrs) {
			t.Fatalf("%d attributes, re-encoded %d", len(r.attrs), len(r2.attrs))
		}
		for i, a := range r.attrs {
			b := r2.attrs[i]
			if a.typ != b.typ || a.resident != b.resident || !bytes.Equal(a.value, b.value) || compareUnits(a.name, b.name) != 0 ||
				a.size != b.size || a.alloc != b.alloc || a.init != b.init || fmt.Sprint(a.runs) != fmt.Sprint(b.runs) {
				t.Fatalf("attribute %d changed when re-encoded: %+v, %+v", i, a, b)
			}
		}
	})
}

// FuzzIndexNode parses arbitrary bytes as an index node; what parses
// encodes back to the same entries.
func FuzzIndexNode(f *testing.F) {
	b := smallVolume(f)
	vol, err := openBytes(b)
	if err != nil {
		f.Fatal(err)
	}
	x, _ := vol.openDir(RootRecord)
	f.Add(x.root.value[irHeaderSize:])
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseNode(data, 0)
		if err != nil {
			return
		}
		hdr := make([]byte, ihSize)
		le.PutUint32(hdr[ihEntriesOff:], ihSize)
		if n.large {
			hdr[ihFlags] = ihFlagLarge
		}
		enc := n.encodeEntries(hdr)
		le.PutUint32(enc[ihIndexLength:], uint32(len(enc)))
		n2, err := parseNode(enc, 0)
		if err != nil {
			t.Fatalf("re-encoded node does not parse: %v", err)
		}
		if len(n2.ents) != len(n.ents) || n2.end != n.end || n2.large != n.large {
			t.Fatalf("node changed when re-encoded")
		}
		for i := range n.ents {
			if !bytes.Equal(n.ents[i].body[:8], n2.ents[i].body[:8]) || !bytes.Equal(n.ents[i].key(), n2.ents[i].key()) || n.ents[i].child != n2.ents[i].child {
				t.Fatalf("entry %d changed when re-encoded", i)
			}
		}
	})
}

// FuzzLogStart reads arbitrary bytes as the start of a $LogFile.
func FuzzLogStart(f *testing.F) {
	page := restartPage(4<<20, true, true, 77)
	log := append(append(append([]byte(nil), page...), page...), bytes.Repeat([]byte{0xFF}, 8192)...)
	f.Add(log)
	f.Add(bytes.Repeat([]byte{0xFF}, 16384))
	f.Fuzz(func(t *testing.T, data []byte) {
		read := func(off int64, b []byte) error {
			n, err := bytes.NewReader(data).ReadAt(b, off)
			if n < len(b) {
				return fmt.Errorf("short: %v", err)
			}
			return nil
		}
		parseLogStart(read, 4<<20)
	})
}

// FuzzRuns decodes arbitrary mapping pairs; what decodes encodes back to
// the same runs.
func FuzzRuns(f *testing.F) {
	pairs, _ := encodeRuns([]run{{VCN: 0, LCN: 100, N: 5}, {VCN: 5, LCN: -1, N: 3}, {VCN: 8, LCN: 40, N: 300}}, 0)
	f.Add(pairs, int64(307))
	f.Fuzz(func(t *testing.T, b []byte, high int64) {
		runs, err := ntfs.DecodeRuns(b, 0, high, 1<<40)
		if err != nil {
			return
		}
		enc, err := encodeRuns(runs, 0)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ntfs.DecodeRuns(enc, 0, high, 1<<40)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(runs) {
			t.Fatalf("runs %v re-encoded as %v (%v)", runs, again, err)
		}
	})
}
