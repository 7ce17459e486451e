package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmmount/vmmount/mount"
	"github.com/vmmount/vmmount/testimages"
)

// Benchmarks of issue 4: the FUSE mount against the kernel's read-only
// loop mount of the same image, in the same run, cold caches (page cache,
// dentries and inodes dropped before each measurement; each side freshly
// mounted). Ratios are vmmount time / kernel time. Run by `make bench`.

func requireMountBench(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1 (make bench) to run the mount benchmarks")
	}
	testimages.RequireRoot(b)
	testimages.RequireTools(b, "mkfs.ext4", "qemu-img", "losetup", "mount", "find", "tar", "dd")
}

// benchMount serves images the way `vmmount mount` does; the returned
// function unmounts.
func benchMount(b *testing.B, images ...string) (string, func()) {
	dir := b.TempDir()
	g := &globalOptions{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	src, err := openMountSource(context.Background(), g, images, "", dir)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := mount.Mount(dir, src.root, mount.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return dir, func() {
		srv.Unmount()
		srv.Wait()
		src.Close()
	}
}

func kernelMount(b *testing.B, raw string) (string, func()) {
	mnt, cleanup, err := testimages.LoopMount(raw, 0, 0, false, "ext4", "ro")
	if err != nil {
		b.Fatal(err)
	}
	return mnt, cleanup
}

func cold(b *testing.B) {
	if err := testimages.DropCaches(); err != nil {
		b.Fatal(err)
	}
}

func timeShell(b *testing.B, script string, args ...string) time.Duration {
	start := time.Now()
	out, err := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v: %s", script, err, out)
	}
	return time.Since(start)
}

// mountRounds is how many times each side runs per benchmark iteration,
// interleaved: the machines are shared and one run of each is noise.
const mountRounds = 3

func report(b *testing.B, what string, ours, kernel time.Duration, target string) {
	ratio := ours.Seconds() / kernel.Seconds()
	runs := b.N * mountRounds
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(ours.Microseconds())/1000/float64(runs), "ms/op")
	n := time.Duration(runs)
	b.Logf("%s: vmmount %v, kernel loop mount %v (mean of %d runs each, interleaved), ratio %.2f (%s)", what, (ours / n).Round(time.Millisecond), (kernel / n).Round(time.Millisecond), runs, ratio, target)
}

// BenchmarkMountFirstListing: from nothing to the first listing of the
// guest root of a qcow2 image (open image, read headers, mount, readdir).
// Target: at most 50 ms. The kernel peer mounts the raw image (a qcow2 it
// cannot mount without qemu-nbd) with losetup + mount.
func BenchmarkMountFirstListing(b *testing.B) {
	requireMountBench(b)
	raw, q := testimages.BenchTreeImage(b)
	var ours, kernel time.Duration
	for b.Loop() {
		for range mountRounds {
			cold(b)
			start := time.Now()
			dir, done := benchMount(b, q)
			if _, err := os.ReadDir(filepath.Join(dir, "fs")); err != nil {
				b.Fatal(err)
			}
			ours += time.Since(start)
			done()

			cold(b)
			start = time.Now()
			mnt, kdone := kernelMount(b, raw)
			if _, err := os.ReadDir(mnt); err != nil {
				b.Fatal(err)
			}
			kernel += time.Since(start)
			kdone()
		}
	}
	report(b, "mount to first listing (qcow2; kernel: raw)", ours, kernel, "target <= 50 ms")
}

// BenchmarkMountFind: `find` over the whole ~75,000-entry tree, cold.
// Target: at most 1.5x the kernel.
func BenchmarkMountFind(b *testing.B) {
	requireMountBench(b)
	raw, _ := testimages.BenchTreeImage(b)
	var ours, kernel time.Duration
	for b.Loop() {
		for range mountRounds {
			mnt, kdone := kernelMount(b, raw)
			cold(b)
			kernel += timeShell(b, `find "$1" >/dev/null`, mnt)
			kdone()

			dir, done := benchMount(b, raw)
			cold(b)
			ours += timeShell(b, `find "$1" >/dev/null`, filepath.Join(dir, "fs"))
			done()
		}
	}
	report(b, "find over the tree, cold", ours, kernel, "target <= 1.5")
}

// BenchmarkMountReadBigFile: read a 1 GiB file, cold. Target: at least
// 0.7x the kernel's throughput (time ratio at most 1/0.7 = 1.43).
func BenchmarkMountReadBigFile(b *testing.B) {
	requireMountBench(b)
	raw, q := testimages.BenchBigFileImage(b)
	var ours, oursQ, kernel time.Duration
	const dd = `dd if="$1" of=/dev/null bs=1M status=none`
	for b.Loop() {
		for range mountRounds {
			mnt, kdone := kernelMount(b, raw)
			cold(b)
			kernel += timeShell(b, dd, filepath.Join(mnt, "big"))
			kdone()

			for _, c := range []struct {
				img string
				t   *time.Duration
			}{{raw, &ours}, {q, &oursQ}} {
				dir, done := benchMount(b, c.img)
				cold(b)
				*c.t += timeShell(b, dd, filepath.Join(dir, "fs", "big"))
				done()
			}
		}
	}
	const size = 1 << 30
	mbs := func(d time.Duration) float64 { return size / d.Seconds() / 1e6 * float64(b.N*mountRounds) }
	b.ReportMetric(mbs(ours), "raw-MB/s")
	b.ReportMetric(mbs(oursQ), "qcow2-MB/s")
	b.ReportMetric(mbs(kernel), "kernel-MB/s")
	b.Logf("1 GiB file, cold: vmmount raw %.0f MB/s (%.2fx kernel), qcow2 %.0f MB/s (%.2fx), kernel %.0f MB/s (target >= 0.7x)",
		mbs(ours), mbs(ours)/mbs(kernel), mbs(oursQ), mbs(oursQ)/mbs(kernel), mbs(kernel))
	b.ReportMetric(mbs(ours)/mbs(kernel), "throughput-ratio")
}

// BenchmarkMountTar: read the whole tree with tar, cold. Target: at most
// 1.5x the kernel.
func BenchmarkMountTar(b *testing.B) {
	requireMountBench(b)
	raw, _ := testimages.BenchTreeImage(b)
	// GNU tar skips reading file data when writing to /dev/null: pipe it.
	const tarCmd = `tar -cf - -C "$1" . | cat >/dev/null`
	var ours, kernel time.Duration
	for b.Loop() {
		for range mountRounds {
			mnt, kdone := kernelMount(b, raw)
			cold(b)
			kernel += timeShell(b, tarCmd, mnt)
			kdone()

			dir, done := benchMount(b, raw)
			cold(b)
			ours += timeShell(b, tarCmd, filepath.Join(dir, "fs"))
			done()
		}
	}
	report(b, "tar of the tree, cold", ours, kernel, "target <= 1.5")
}
