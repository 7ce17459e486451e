package vmdk

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// BenchmarkSequentialRead reads a 1 GiB image, half of it data, front to
// back in 4 MiB reads, and `qemu-img bench` does the same; the ratio is our
// time over qemu's (below 1 is faster). Needs VMMOUNT_BENCH=1.
func BenchmarkSequentialRead(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1 to run")
	}
	for _, v := range []struct{ name, options string }{{"sparse", "subformat=monolithicSparse"}, {"stream", "subformat=streamOptimized"}} {
		b.Run(v.name, func(b *testing.B) {
			path := testimages.VDiskBenchImage(b, "vmdk-"+v.name, "vmdk", v.options)
			img := mustOpen(b, path)
			buf := make([]byte, 4<<20)
			format := img.Info().Format
			testimages.QemuBenchRead(b, path, format, img.Size()) // warm the page cache
			b.SetBytes(img.Size())
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for off := int64(0); off < img.Size(); off += int64(len(buf)) {
					if _, err := img.ReadAt(buf, off); err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
			}
			ours := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			peer := testimages.QemuBenchRead(b, path, format, img.Size())
			b.ReportMetric(float64(ours)/float64(peer), "ratio")
			b.Logf("%s: vmmount %v, qemu-img bench %v, ratio %.2f", v.name, ours, peer, float64(ours)/float64(peer))
		})
	}
}
