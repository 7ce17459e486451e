package testimages

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fixtures for the VMDK, VHD and VHDX readers: one source raw image with a
// recognisable pattern and holes, converted by qemu-img into each variant,
// with qemu-img's view of every variant beside it (NAME.raw from
// `qemu-img convert -O raw`, NAME.map.json from `qemu-img map`) as the
// oracle.

// VDiskSourceSize is the size of the source image: not a multiple of any
// grain or block size, so partial last grains and blocks are exercised.
const VDiskSourceSize = 12<<20 + 3*512

// VDiskPatternByte is the byte the source holds at off inside a data run. It
// depends on the offset so a byte read from the wrong place shows.
func VDiskPatternByte(off int64) byte {
	x := uint64(off) * 0x9e3779b97f4a7c15
	b := byte(x >> 56)
	if b == 0 {
		b = 0xa5
	}
	return b
}

// VDiskDataRuns are the [start, end) ranges of the source that hold data;
// the rest is a hole. They cross grain (64 KiB) and block (1-2 MiB)
// boundaries, include a lone sector and the very last bytes.
var VDiskDataRuns = [][2]int64{
	{0, 100000},
	{1<<20 + 4096, 1<<20 + 4096 + 200<<10},
	{5<<20 - 1000, 5<<20 + 70000},
	{8<<20 + 512*77, 8<<20 + 512*78},
	{VDiskSourceSize - 3000, VDiskSourceSize},
}

// WriteVDiskSource writes the sparse source image to path.
func WriteVDiskSource(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(VDiskSourceSize); err != nil {
		return err
	}
	for _, r := range VDiskDataRuns {
		buf := make([]byte, r[1]-r[0])
		for i := range buf {
			buf[i] = VDiskPatternByte(r[0] + int64(i))
		}
		if _, err := f.WriteAt(buf, r[0]); err != nil {
			return err
		}
	}
	return f.Close()
}

// VDiskVariant is one image qemu-img makes from the source.
type VDiskVariant struct {
	Name    string // file name of the image, e.g. "sparse.vmdk"
	Format  string // qemu-img -O
	Options string // qemu-img -o, may be empty
	// Build, if set, makes the image instead of `qemu-img convert` (from
	// the source image src, in dir, possibly from variants built before
	// it); the oracle is still qemu-img's view of the result.
	Build func(dir, src, dst string) error
}

// VDiskImages builds (once, cached) the source image "source.raw" and each
// variant with its oracle files NAME.raw and NAME.map.json, in a directory
// named set-version. Requires qemu-img.
func VDiskImages(t testing.TB, set, version string, variants []VDiskVariant) string {
	t.Helper()
	RequireTools(t, "qemu-img")
	return Get(t, set, version, func(dir string) error {
		src := filepath.Join(dir, "source.raw")
		if err := WriteVDiskSource(src); err != nil {
			return err
		}
		for _, v := range variants {
			dst := filepath.Join(dir, v.Name)
			if v.Build != nil {
				if err := v.Build(dir, src, dst); err != nil {
					return fmt.Errorf("%s: %w", v.Name, err)
				}
				if err := VDiskOracle(dst, v.Format); err != nil {
					return err
				}
				continue
			}
			args := []string{"convert", "-f", "raw", "-O", v.Format}
			if v.Options != "" {
				args = append(args, "-o", v.Options)
			}
			if _, err := Run("qemu-img", append(args, src, dst)...); err != nil {
				return err
			}
			if err := VDiskOracle(dst, v.Format); err != nil {
				return err
			}
		}
		return nil
	})
}

// VDiskOracle writes qemu-img's view of image (format fmt): image.raw and
// image.map.json.
func VDiskOracle(image, format string) error {
	if _, err := Run("qemu-img", "convert", "-f", format, "-O", "raw", image, image+".raw"); err != nil {
		return err
	}
	out, err := Run("qemu-img", "map", "-f", format, "--output=json", image)
	if err != nil {
		return err
	}
	return os.WriteFile(image+".map.json", []byte(out), 0o644)
}

// QemuMapEntry is one entry of `qemu-img map --output=json`.
type QemuMapEntry struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Depth   int   `json:"depth"`
	Present bool  `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

// ReadQemuMap reads a NAME.map.json file.
func ReadQemuMap(path string) ([]QemuMapEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m []QemuMapEntry
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// VDiskImage is what the checks need of an opened image (vdisk.Image).
type VDiskImage interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// CheckVDiskRead compares every byte of img with the oracle raw file, reading
// in several chunk sizes and at unaligned offsets, and checks io.EOF
// behaviour at the end.
func CheckVDiskRead(t testing.TB, img VDiskImage, rawPath string) {
	t.Helper()
	want, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if img.Size() != int64(len(want)) {
		t.Fatalf("Size = %d, qemu-img says %d", img.Size(), len(want))
	}
	for _, chunk := range []int{4 << 20, 65536 + 512, 4096 - 17} {
		got := make([]byte, len(want))
		for off := 0; off < len(want); off += chunk {
			end := min(off+chunk, len(want))
			n, err := img.ReadAt(got[off:end], int64(off))
			if n != end-off || (err != nil && !(end == len(want) && err.Error() == "EOF")) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", end-off, off, n, err)
			}
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("chunk %d: first difference at offset %d (0x%x): got %#x, want %#x", chunk, i, i, got[i], want[i])
		}
	}
	// Past the end: short read with io.EOF, then nothing with io.EOF.
	buf := make([]byte, 1024)
	n, err := img.ReadAt(buf, int64(len(want))-100)
	if n != 100 || err == nil || err.Error() != "EOF" {
		t.Fatalf("read across the end = %d, %v; want 100, EOF", n, err)
	}
	if n, err := img.ReadAt(buf, int64(len(want))); n != 0 || err == nil || err.Error() != "EOF" {
		t.Fatalf("read at the end = %d, %v; want 0, EOF", n, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// VDiskExtent is the part of vdisk.Extent the checks use.
type VDiskExtent struct {
	Off, Len int64
	Data     bool
}

// CheckVDiskDataMap compares the ranges img reports as data with the ranges
// qemu-img map reports as data.
func CheckVDiskDataMap(t testing.TB, got []VDiskExtent, mapPath string) {
	t.Helper()
	m, err := ReadQemuMap(mapPath)
	if err != nil {
		t.Fatal(err)
	}
	var want, have [][2]int64
	add := func(l [][2]int64, s, e int64) [][2]int64 {
		if n := len(l); n > 0 && l[n-1][1] == s {
			l[n-1][1] = e
			return l
		}
		return append(l, [2]int64{s, e})
	}
	for _, e := range m {
		if e.Data {
			want = add(want, e.Start, e.Start+e.Length)
		}
	}
	for _, e := range got {
		if e.Data {
			have = add(have, e.Off, e.Off+e.Len)
		}
	}
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Errorf("data ranges differ from qemu-img map:\n got %v\nwant %v", have, want)
	}
}

// VDiskBenchSize is the virtual size of the read benchmark images.
const VDiskBenchSize = 1 << 30

// VDiskBenchImage builds (once, cached) a 1 GiB image for read benchmarks:
// every other MiB holds data, the rest is a hole, converted by qemu-img to
// format with options. It returns the image's path.
func VDiskBenchImage(t testing.TB, name, format, options string) string {
	t.Helper()
	RequireTools(t, "qemu-img")
	dir := Get(t, "vdisk-bench-"+name, "v1", func(dir string) error {
		src := filepath.Join(dir, "source.raw")
		f, err := os.Create(src)
		if err != nil {
			return err
		}
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = VDiskPatternByte(int64(i))
		}
		for off := int64(0); off < VDiskBenchSize; off += 2 << 20 {
			copy(buf, fmt.Sprintf("MiB %d", off>>20))
			if _, err := f.WriteAt(buf, off); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Truncate(VDiskBenchSize); err != nil {
			f.Close()
			return err
		}
		f.Close()
		args := []string{"convert", "-f", "raw", "-O", format}
		if options != "" {
			args = append(args, "-o", options)
		}
		if _, err := Run("qemu-img", append(args, src, filepath.Join(dir, "image"))...); err != nil {
			return err
		}
		return os.Remove(src)
	})
	return filepath.Join(dir, "image")
}

// QemuBenchRead times `qemu-img bench` reading the whole image sequentially
// in 4 MiB requests, the peer of a sequential read benchmark.
func QemuBenchRead(t testing.TB, path, format string, size int64) time.Duration {
	t.Helper()
	const req = 4 << 20
	start := time.Now()
	if _, err := Run("qemu-img", "bench", "-f", format, "-c", fmt.Sprint(size/req), "-s", fmt.Sprint(req), "-d", "1", path); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// CheckVDiskConcurrent reads random ranges of img from several goroutines
// at once and compares them with the oracle raw file (run it under -race).
func CheckVDiskConcurrent(t testing.TB, img VDiskImage, rawPath string) {
	t.Helper()
	want, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(want))
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func(seed uint64) {
			x := seed*0x9e3779b97f4a7c15 + 1
			rnd := func(n int64) int64 {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				return int64(x % uint64(n))
			}
			buf := make([]byte, 256<<10)
			for i := 0; i < 200; i++ {
				off := rnd(size)
				n := min(1+rnd(int64(len(buf))), size-off)
				if m, err := img.ReadAt(buf[:n], off); int64(m) != n || (err != nil && err.Error() != "EOF") {
					errs <- fmt.Errorf("ReadAt(%d, %d) = %d, %v", n, off, m, err)
					return
				}
				if i := firstDiff(buf[:n], want[off:off+n]); i >= 0 {
					errs <- fmt.Errorf("concurrent read of %d bytes at %d differs at %d", n, off, off+int64(i))
					return
				}
			}
			errs <- nil
		}(uint64(g))
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// VhdiOracle reads image with libvhdi's vhdimount, a reader independent of
// qemu that follows VHD and VHDX differencing chains and reads 4 KiB-sector
// VHDX (which qemu-img refuses): it mounts the image with FUSE, copies the
// top layer (the highest-numbered vhdiN file) to out and unmounts. Callers
// RequireTools(t, "vhdimount") and RequireRoot first.
func VhdiOracle(image, out string) error {
	dir, err := os.MkdirTemp("", "vmmount-vhdi-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if _, err := Run("vhdimount", image, dir); err != nil {
		return err
	}
	defer func() {
		if _, err := Run("umount", dir); err != nil {
			Run("umount", "-l", dir)
		}
	}()
	var top string
	for n := 1; ; n++ {
		p := filepath.Join(dir, fmt.Sprintf("vhdi%d", n))
		if _, err := os.Stat(p); err != nil {
			break
		}
		top = p
	}
	if top == "" {
		return fmt.Errorf("vhdimount %s: no layer files", image)
	}
	b, err := os.ReadFile(top)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
