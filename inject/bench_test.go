package inject

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// BenchmarkInjectLargeFile injects a 256 MiB file into a 1 GiB raw ext4
// image with everything inject does (undo file with the old bytes,
// synced; the write; reading back and comparing with the source), and
// `debugfs -w -R write` puts the same file into a copy of the same image
// (no undo, no verification). The ratio is our time over debugfs's.
// Needs VMMOUNT_BENCH=1.
func BenchmarkInjectLargeFile(b *testing.B) {
	if os.Getenv("VMMOUNT_BENCH") != "1" {
		b.Skip("set VMMOUNT_BENCH=1 to run")
	}
	testimages.RequireTools(b, "mkfs.ext4", "debugfs", "e2fsck")
	dir := b.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := testimages.Truncate(base, 1<<30); err != nil {
		b.Fatal(err)
	}
	testimages.MustRun(b, "mkfs.ext4", "-q", "-F", base)
	src := filepath.Join(dir, "big.bin")
	data := make([]byte, 256<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	fresh := func(name string) string {
		p := filepath.Join(dir, name)
		os.Remove(p)
		testimages.MustRun(b, "cp", "--sparse=always", base, p)
		return p
	}
	b.SetBytes(int64(len(data)))
	var ours, peer time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		img := fresh("ours.raw")
		undo := filepath.Join(dir, "ours.undo")
		os.Remove(undo)
		b.StartTimer()
		start := time.Now()
		if _, err := Run(context.Background(), Options{Target: Target{Images: []string{img}}, Sources: []string{src}, GuestDir: "/fs", UndoFile: undo}); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		b.StopTimer()
		img = fresh("peer.raw")
		start = time.Now()
		if out, err := exec.Command("debugfs", "-w", "-R", "write "+src+" big.bin", img).CombinedOutput(); err != nil {
			b.Fatalf("debugfs: %v\n%s", err, out)
		}
		peer += time.Since(start)
		for _, p := range []string{"ours.raw", "peer.raw"} {
			if out, err := exec.Command("e2fsck", "-fn", filepath.Join(dir, p)).CombinedOutput(); err != nil {
				b.Fatalf("%s: e2fsck: %v\n%s", p, err, out)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(ours)/float64(peer), "ratio")
	b.Logf("256 MiB into ext4: vmmount inject %v (undo, sync, verify), debugfs write %v, ratio %.2f", ours/time.Duration(b.N), peer/time.Duration(b.N), float64(ours)/float64(peer))
}
