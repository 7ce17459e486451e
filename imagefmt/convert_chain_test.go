package imagefmt

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestConvertFromQcow2 converts qemu-made qcow2 sources (compressed, and
// the top of a chain with zero clusters over backing data) to qcow2, raw,
// and to a new overlay on the same base: each must compare equal to the
// source through qemu-img.
func TestConvertFromQcow2(t *testing.T) {
	requireQemuImg(t)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and qemu-io (qemu-utils) is not installed")
		}
		t.Skip("qemu-io not installed")
	}
	dir := t.TempDir()
	srcRaw := filepath.Join(dir, "src.raw")
	makeSource(t, srcRaw, 12<<20, 11)
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "convert", "-q", "-c", "-O", "qcow2", "-o", "compression_type=zstd,cluster_size=16384", srcRaw, base)
	top := filepath.Join(dir, "top.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", "-b", "base.qcow2", "-F", "qcow2", top)
	if out, err := exec.Command("qemu-io", "-c", "write -P 0x33 1M 300k", "-c", "write -z 4M 1M",
		"-c", "write -P 0x44 7M 64k", "-c", "write -z -u 9M 128k", top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, src, srcFmt string
		opts              ConvertOptions
	}{
		{"compressed-to-qcow2", base, "qcow2", ConvertOptions{}},
		{"compressed-to-raw", base, "qcow2", ConvertOptions{Format: "raw"}},
		{"chain-to-qcow2-zlib", top, "qcow2", ConvertOptions{Compression: "zlib", ClusterSize: 4096}},
		{"chain-to-raw", top, "qcow2", ConvertOptions{Format: "raw"}},
		{"chain-to-overlay", top, "qcow2", ConvertOptions{BackingFile: "base.qcow2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Open(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			format := tc.opts.Format
			if format == "" {
				format = "qcow2"
			}
			dst := filepath.Join(dir, tc.name+"."+format)
			if err := Convert(context.Background(), img, dst, tc.opts); err != nil {
				t.Fatal(err)
			}
			if format == "qcow2" {
				checkClean(t, dst)
			}
			qemuImg(t, "compare", "-f", format, "-F", tc.srcFmt, dst, tc.src)
			if tc.opts.BackingFile != "" {
				// Only the clusters qemu-io wrote differ from the base.
				st, _ := os.Stat(dst)
				if st.Size() > 3<<20 {
					t.Errorf("overlay is %d bytes; about 1.5 MiB differs from the base", st.Size())
				}
			}
		})
	}
}
