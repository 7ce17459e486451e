package qcow2

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/raw"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// fuzzOptions give fuzzed images a backing file and a data file to find.
func fuzzOptions() vdisk.OpenOptions {
	return vdisk.OpenOptions{
		Name: "fuzz.qcow2",
		OpenBacking: func(name, format string) (vdisk.Image, error) {
			return raw.Open(vdisk.BytesFile(name, bytes.Repeat([]byte{0xbb}, 5000)), vdisk.OpenOptions{Name: name})
		},
		OpenFile: func(name string) (vdisk.File, error) {
			return vdisk.BytesFile(name, bytes.Repeat([]byte{0xdd}, 70000)), nil
		},
	}
}

// exercise opens b and uses every reader entry point, checking the
// invariants of vdisk.Image on the way. Errors are fine; panics, hangs and
// inconsistent answers are not.
func exercise(t *testing.T, b []byte) {
	img, err := Open(vdisk.BytesFile("fuzz.qcow2", b), fuzzOptions())
	if err != nil {
		var fe *vdisk.FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("Open error %q is not a FormatError", err)
		}
		return
	}
	defer img.Close()
	_ = img.Info()
	size := img.Size()
	if size < 0 {
		t.Fatalf("negative size %d", size)
	}
	// Reads of a few clusters: enough to cross entries and tables and to
	// inflate several clusters at once, small enough to keep each run
	// fast (the fuzzer minimizes every new input by rerunning it).
	buf := make([]byte, 3000)
	for _, off := range []int64{0, size / 2, size - 1000, size - 1} {
		if off < 0 {
			continue
		}
		n, err := img.ReadAt(buf, off)
		if n > len(buf) || (err == nil && n != len(buf)) || (err == io.EOF && off+int64(n) != size) {
			t.Fatalf("ReadAt(%d) = %d, %v with size %d", off, n, err, size)
		}
	}
	ex, err := img.Extents(0, size)
	if err != nil {
		return
	}
	pos := int64(0)
	for _, e := range ex {
		if e.Off != pos || e.Len <= 0 {
			t.Fatalf("extents not contiguous at %d: %+v", pos, e)
		}
		pos += e.Len
	}
	if pos != size {
		t.Fatalf("extents end at %d, size %d", pos, size)
	}
}

// synthSeeds are small crafted images covering each kind of entry.
func synthSeeds() [][]byte {
	cs := 512
	full := bytes.Repeat([]byte("seed data "), 52)[:cs]
	var seeds [][]byte
	plain := synth{data: [][]byte{full, full}}
	plain.l2 = []uint64{plain.dataOff(0) | EntryCopied, L2Zero, 0, plain.dataOff(1)}
	seeds = append(seeds, plain.bytes())

	z := synth{data: [][]byte{full}, tail: deflateRaw(full)}
	z.l2 = []uint64{EncodeCompressed(z.tailOff(), len(z.tail), 9), z.dataOff(0)}
	seeds = append(seeds, z.bytes())

	zs := synth{data: [][]byte{full}, tail: zstdFrame(full), compression: CompressionZstd, incompat: IncompatCompression}
	zs.l2 = []uint64{EncodeCompressed(zs.tailOff(), len(zs.tail), 9)}
	seeds = append(seeds, zs.bytes())

	ext := synth{bits: 14, incompat: IncompatExtendedL2, data: [][]byte{bytes.Repeat([]byte{3}, 1<<14)}}
	ext.l2 = []uint64{ext.dataOff(0), 0x0000_00f0_0000_000f, 0, 0xffff_0000_0000_0000}
	seeds = append(seeds, ext.bytes())

	back := synth{version: 2, backing: "base.raw", exts: []RawExtension{{Type: ExtBackingFormat, Data: []byte("raw")}}, data: [][]byte{full}}
	back.l2 = []uint64{0, back.dataOff(0)}
	seeds = append(seeds, back.bytes())

	df := synth{incompat: IncompatDataFile, autoclear: AutoclearDataFileRaw,
		exts: []RawExtension{{Type: ExtDataFile, Data: []byte("data.raw")}, featureTable(featureName(0, 2, "external data file"))}}
	df.l2 = []uint64{EntryCopied, 512 | EntryCopied, 0, L2Zero}
	seeds = append(seeds, df.bytes())
	return seeds
}

// fixtureSeeds are the first 16 KiB of the qemu fixtures: the header and
// its extensions, and for small cluster sizes the tables too. Larger seeds
// make the fuzzer crawl (minimizing a 300 KiB input takes minutes).
func fixtureSeeds(f *testing.F) [][]byte {
	if _, err := exec.LookPath("qemu-io"); err != nil && !testimages.InCI() {
		return nil
	}
	var seeds [][]byte
	for _, fx := range testimages.Qcow2Fixtures(f) {
		fd, err := os.Open(fx.Path)
		if err != nil {
			f.Fatal(err)
		}
		b := make([]byte, 16<<10)
		n, _ := io.ReadFull(fd, b)
		fd.Close()
		seeds = append(seeds, b[:n])
	}
	return seeds
}

// FuzzOpen fuzzes whole images: header, extensions and tables.
func FuzzOpen(f *testing.F) {
	for _, s := range synthSeeds() {
		f.Add(s)
	}
	for _, s := range fixtureSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		exercise(t, b)
	})
}

// FuzzRead keeps a valid header and fuzzes what reads walk: the L2 table
// (and an L1 entry), the compressed streams and data behind it.
func FuzzRead(f *testing.F) {
	for _, s := range synthSeeds() {
		if len(s) >= 5*512 {
			f.Add(s[synthL2*512:synthL2*512+512], s[synthData*512:], uint64(s[synthL1*512+6])<<8|uint64(s[synthL1*512+7]), false)
		}
	}
	f.Add(make([]byte, 512), []byte{}, uint64(0), true)
	f.Fuzz(func(t *testing.T, l2, tail []byte, l1 uint64, zstd bool) {
		s := synth{tail: tail}
		if zstd {
			s.compression, s.incompat = CompressionZstd, IncompatCompression
		}
		b := s.bytes()
		copy(b[synthL2*512:synthL2*512+512], l2)
		// Let the fuzzer move the L2 table too, within the first clusters.
		b[synthL1*512+6], b[synthL1*512+7] = byte(l1>>8), byte(l1)
		exercise(t, b)
	})
}
