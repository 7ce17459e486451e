package ntfs

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/testimages"
)

// Benchmarks against ntfs-3g on the same image in the same run; they run
// with VMMOUNT_BENCH=1 (make bench) and print the ratio vmmount/ntfs-3g
// (below 1 is faster).

func benchOnly(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1")
	}
}

const benchFileSize = 512 << 20

func buildBench(dir string) error {
	img := filepath.Join(dir, "img")
	if err := testimages.Truncate(img, benchFileSize+128<<20); err != nil {
		return err
	}
	if _, err := testimages.Run("mkntfs", "-F", "-Q", "-q", img); err != nil {
		return err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "no_detach,big_writes", img, mnt)
	if err != nil {
		return err
	}
	_, err = testimages.Run("dd", "if=/dev/urandom", "of="+filepath.Join(mnt, "big.bin"), "bs=4M", "count="+strconv.Itoa(benchFileSize/(4<<20)))
	if uerr := umount(); err == nil {
		err = uerr
	}
	return err
}

// ntfs3gMount mounts img read-only with ntfs-3g for the duration of b.
func ntfs3gMount(b *testing.B, img string) string {
	mnt := b.TempDir()
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach", img, mnt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { umount() })
	return mnt
}

func dropCaches() { os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) }

func BenchmarkReadLargeFile(b *testing.B) {
	benchOnly(b)
	testimages.RequireTools(b, "mkntfs", "ntfs-3g")
	dir := testimages.Get(b, "fsread-ntfs-bench", "v1", buildBench)
	img := filepath.Join(dir, "img")
	mnt := ntfs3gMount(b, img)
	f := openImage(b, img, Options{Name: "bench"})
	buf := make([]byte, 1<<20)
	var ours, theirs time.Duration
	for b.Loop() {
		dropCaches()
		t0 := time.Now()
		// Read in 1 MiB requests, as the FUSE mount and restore do.
		fl, err := fsys.NewFS(f).Open("big.bin")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, fl.(io.Reader), buf)
		fl.Close()
		if err != nil || n != benchFileSize {
			b.Fatal(n, err)
		}
		ours += time.Since(t0)
		dropCaches()
		t0 = time.Now()
		h, err := os.Open(filepath.Join(mnt, "big.bin"))
		if err != nil {
			b.Fatal(err)
		}
		n, err = io.CopyBuffer(io.Discard, h, buf)
		h.Close()
		if err != nil || n != benchFileSize {
			b.Fatal(n, err)
		}
		theirs += time.Since(t0)
	}
	b.SetBytes(benchFileSize)
	b.ReportMetric(float64(benchFileSize)*float64(b.N)/ours.Seconds()/1e6, "vmmount-MB/s")
	b.ReportMetric(float64(benchFileSize)*float64(b.N)/theirs.Seconds()/1e6, "ntfs3g-MB/s")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "ratio")
	b.Logf("read 512 MiB: vmmount %v, ntfs-3g %v, ratio %.2f", ours/time.Duration(b.N), theirs/time.Duration(b.N), ours.Seconds()/theirs.Seconds())
}

func BenchmarkWalkTree(b *testing.B) {
	benchOnly(b)
	img, _, _ := getFixture(b)
	mnt := ntfs3gMount(b, img)
	var ours, theirs time.Duration
	for b.Loop() {
		dropCaches()
		t0 := time.Now()
		f := openImage(b, img, Options{Name: "bench"})
		if _, err := testimages.ScanFS(f); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		dropCaches()
		t0 = time.Now()
		if _, err := testimages.ScanDir(mnt); err != nil {
			b.Fatal(err)
		}
		theirs += time.Since(t0)
	}
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "ratio")
	b.Logf("walk+stat+read+xattrs of the rich tree: vmmount %v, ntfs-3g %v, ratio %.2f", ours/time.Duration(b.N), theirs/time.Duration(b.N), ours.Seconds()/theirs.Seconds())
}
