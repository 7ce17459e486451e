package ext

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/testimages"
)

// Benchmarks of issue 3, each against the kernel's read-only loop mount of
// the same image in the same run, printing the ratio (ours / kernel: lower
// is better). They need root and big images, so they run only with
// VMMOUNT_BENCH=1 (make bench).

func requireBench(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1 (make bench) to run the ext benchmarks")
	}
	testimages.RequireRoot(b)
	testimages.RequireTools(b, "mkfs.ext4", "losetup", "mount", "cp")
}

// benchTreeImage is the shared ~75,000-entry ext4 image of real files.
func benchTreeImage(b *testing.B) string {
	raw, _ := testimages.BenchTreeImage(b)
	return raw
}

// benchBigFileImage holds one 1 GiB file of incompressible data, as raw
// and as qcow2.
func benchBigFileImage(b *testing.B) (raw, qcow2 string) { return testimages.BenchBigFileImage(b) }

// walkTree lstats every entry of fsys, reads every regular file to the end
// and every symlink's target: what a backup or a restore does.
func walkTree(fsys fs.FS) (entries, size int64, err error) {
	buf := make([]byte, 1<<20)
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		entries++
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode().IsRegular():
			f, err := fsys.Open(p)
			if err != nil {
				return err
			}
			for {
				n, err := f.Read(buf)
				size += int64(n)
				if err == io.EOF {
					break
				}
				if err != nil {
					f.Close()
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			f.Close()
		case info.Mode()&fs.ModeSymlink != 0:
			if _, err := fs.ReadLink(fsys, p); err != nil {
				return err
			}
		}
		return nil
	})
	return entries, size, err
}

// peakRSS returns the process's peak resident set (VmHWM); resetPeak
// restarts it (Linux clear_refs 5).
func peakRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func resetPeak() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// warm reads an image once so every reader starts from the page cache.
func warm(b *testing.B, name string) {
	f, err := os.Open(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 4<<20)); err != nil {
		b.Fatal(err)
	}
}

func openFile(b *testing.B, name string) (*os.File, int64) {
	f, err := os.Open(name)
	if err != nil {
		b.Fatal(err)
	}
	st, _ := f.Stat()
	return f, st.Size()
}

// BenchmarkWalk: walk, stat and read every file, vmmount vs. the kernel.
// Target: ratio <= 1.5, peak RSS <= 200 MiB.
func BenchmarkWalk(b *testing.B) {
	requireBench(b)
	img := benchTreeImage(b)
	warm(b, img) // both start from the host page cache
	var kernel, ours time.Duration
	var kEntries, kBytes, vEntries, vBytes int64
	var peak int64
	for b.Loop() {
		mnt, cleanup, err := testimages.LoopMount(img, 0, 0, false, "", "ro")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		kEntries, kBytes, err = walkTree(os.DirFS(mnt))
		kernel += time.Since(start)
		cleanup()
		if err != nil {
			b.Fatal(err)
		}

		runtime.GC()
		resetPeak()
		base := peakRSS()
		r, size := openFile(b, img)
		start = time.Now()
		f, err := Open(r, size, Options{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		vEntries, vBytes, err = walkTree(fsys.NewFS(f))
		ours += time.Since(start)
		peak = max(peak, peakRSS()-base)
		f.Close()
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	if kEntries != vEntries || kBytes != vBytes {
		b.Errorf("kernel walked %d entries, %d bytes; vmmount %d, %d", kEntries, kBytes, vEntries, vBytes)
	}
	ratio := ours.Seconds() / kernel.Seconds()
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(peak)/(1<<20), "peakMiB")
	b.Logf("walk of %d entries, %.2f GB: vmmount %v, kernel loop mount %v, ratio %.2f (target <= 1.5); peak RSS growth %.0f MiB (target <= 200)",
		vEntries, float64(vBytes)/1e9, ours.Round(time.Millisecond), kernel.Round(time.Millisecond), ratio, float64(peak)/(1<<20))
}

// BenchmarkBigFile: read one 1 GiB file from a raw and a qcow2 image, vs.
// the kernel reading it from a loop mount. Target: >= 1 GB/s.
func BenchmarkBigFile(b *testing.B) {
	requireBench(b)
	testimages.RequireTools(b, "qemu-img")
	raw, q := benchBigFileImage(b)
	warm(b, raw)
	warm(b, q)
	buf := make([]byte, 1<<20)
	read := func(r io.ReaderAt, size int64) (time.Duration, error) {
		start := time.Now()
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	var kernel, rawT, qT time.Duration
	var size int64
	for b.Loop() {
		mnt, cleanup, err := testimages.LoopMount(raw, 0, 0, false, "", "ro")
		if err != nil {
			b.Fatal(err)
		}
		kf, err := os.Open(filepath.Join(mnt, "big"))
		if err != nil {
			cleanup()
			b.Fatal(err)
		}
		st, _ := kf.Stat()
		size = st.Size()
		d, err := read(kf, size)
		kf.Close()
		cleanup()
		if err != nil {
			b.Fatal(err)
		}
		kernel += d

		for _, c := range []struct {
			name string
			t    *time.Duration
		}{{raw, &rawT}, {q, &qT}} {
			img, err := imagefmt.Open(c.name)
			if err != nil {
				b.Fatal(err)
			}
			f, err := Open(img, img.Size(), Options{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			ino, err := f.Lookup(f.Root(), "big")
			if err != nil {
				b.Fatal(err)
			}
			fl, err := f.Open(ino)
			if err != nil {
				b.Fatal(err)
			}
			d, err := read(fl, fl.Size())
			img.Close()
			if err != nil {
				b.Fatal(err)
			}
			*c.t += d
		}
	}
	gbs := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e9 * float64(b.N) }
	b.ReportMetric(gbs(rawT), "raw-GB/s")
	b.ReportMetric(gbs(qT), "qcow2-GB/s")
	b.ReportMetric(rawT.Seconds()/kernel.Seconds(), "ratio")
	b.Logf("1 GiB file: vmmount raw %.2f GB/s, qcow2 %.2f GB/s, kernel loop mount %.2f GB/s; ratio raw/kernel time %.2f (target >= 1 GB/s)",
		gbs(rawT), gbs(qT), gbs(kernel), rawT.Seconds()/kernel.Seconds())
}
