package qcow2

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// BenchmarkSequentialRead reads a 2 GiB qcow2 image (64 KiB clusters, half
// allocated) from start to end and compares with `qemu-img convert` of the
// same image in the same run.
//
// Both sides discard what they read, so the figure is the reader's: vmmount
// writes each 2 MiB buffer to /dev/null; qemu-img converts to its null-co
// block driver (`qemu-img convert -n --target-image-opts IMAGE
// driver=null-co,...`), qemu's /dev/null (it cannot convert to /dev/null
// itself, a device it cannot grow). qemu-img skips the unallocated half
// (it asks for block status first and writes zeroes cheaply to null-co);
// vmmount reads it as zeros through ReadAt like any reader would. The image
// is read once before timing so both read it from the page cache; each side
// runs three times, alternating, and the best time counts.
func BenchmarkSequentialRead(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1 (make bench) to run")
	}
	testimages.RequireTools(b, "qemu-img")
	name := testimages.Qcow2BenchImage(b)
	if f, err := os.Open(name); err == nil { // warm the page cache
		io.Copy(io.Discard, f)
		f.Close()
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()

	ours := func() time.Duration {
		start := time.Now()
		f, err := vdisk.OpenOSFile(name)
		if err != nil {
			b.Fatal(err)
		}
		img, err := Open(f, vdisk.OpenOptions{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		defer img.Close()
		buf := make([]byte, 2<<20)
		for off := int64(0); off < img.Size(); off += int64(len(buf)) {
			n, err := img.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
			// Every other MiB holds data that starts with its offset
			// (testimages.Qcow2BenchImage): a cheap check it was read.
			if !bytes.HasPrefix(buf, []byte("chunk at "+strconv.FormatInt(off, 10))) {
				b.Fatalf("wrong data at %d", off)
			}
			if _, err := null.Write(buf[:n]); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	qemu := func() time.Duration {
		start := time.Now()
		testimages.MustRun(b, "qemu-img", "convert", "-n", "--target-image-opts", name,
			"driver=null-co,size="+strconv.Itoa(testimages.Qcow2BenchSize))
		return time.Since(start)
	}

	best := func(d *time.Duration, f func() time.Duration) {
		if t := f(); *d == 0 || t < *d {
			*d = t
		}
	}
	var tOurs, tQemu time.Duration
	for b.Loop() {
		for range 3 {
			best(&tOurs, ours)
			best(&tQemu, qemu)
		}
	}
	mb := float64(testimages.Qcow2BenchSize) / (1 << 20)
	ratio := tOurs.Seconds() / tQemu.Seconds()
	b.ReportMetric(mb/tOurs.Seconds(), "MiB/s")
	b.ReportMetric(mb/tQemu.Seconds(), "qemu-MiB/s")
	b.ReportMetric(ratio, "ratio")
	b.Logf("sequential read of 2 GiB qcow2: vmmount %v, qemu-img convert %v, time ratio %.2f (<= 1.00: at least as fast as qemu-img)",
		tOurs.Round(time.Millisecond), tQemu.Round(time.Millisecond), ratio)
}
