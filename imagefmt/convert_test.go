package imagefmt

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func requireQemuImg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and qemu-img is not installed")
		}
		t.Skip("qemu-img not installed")
	}
}

// makeSource writes a sparse raw file of size bytes with holes, written
// zeros, compressible and random data, and returns its content.
func makeSource(t testing.TB, path string, size int64, seed uint64) []byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 2))
	for off := int64(0); off < size; {
		n := min(int64(1+rng.IntN(300<<10)), size-off)
		b := want[off : off+n]
		switch rng.IntN(5) {
		case 0: // hole
		case 1: // written zeros
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		case 2: // random
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			f.WriteAt(b, off)
		default: // text-like
			words := []string{"vmmount ", "qcow2 ", "cluster ", "refcount ", "\n", "backing ", "zstd "}
			for i := 0; i < len(b); {
				i += copy(b[i:], words[rng.IntN(len(words))])
			}
			f.WriteAt(b, off)
		}
		off += n
	}
	return want
}

func qemuImg(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkClean runs qemu-img check and fails on any corruption or leak
// (exit status 2 or 3).
func checkClean(t testing.TB, path string) {
	t.Helper()
	qemuImg(t, "check", "-f", "qcow2", path)
}

func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func convertFile(t testing.TB, src, dst string, opts ConvertOptions) {
	t.Helper()
	img, err := OpenWith(src, Options{Format: FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := Convert(context.Background(), img, dst, opts); err != nil {
		t.Fatal(err)
	}
}

func TestConvertQcow2(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	makeSource(t, src, 24<<20+12<<10, 1)
	for _, tc := range []struct {
		name string
		opts ConvertOptions
	}{
		{"512", ConvertOptions{ClusterSize: 512}},
		{"64k", ConvertOptions{}},
		{"2m", ConvertOptions{ClusterSize: 2 << 20}},
		{"512-zlib", ConvertOptions{ClusterSize: 512, Compression: "zlib"}},
		{"64k-zlib", ConvertOptions{Compression: "zlib"}},
		{"64k-zstd", ConvertOptions{Compression: "zstd"}},
		{"2m-zstd", ConvertOptions{ClusterSize: 2 << 20, Compression: "zstd", Workers: 3}},
		{"4k-zstd-1worker", ConvertOptions{ClusterSize: 4096, Compression: "zstd", Workers: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, tc.name+".qcow2")
			convertFile(t, src, dst, tc.opts)
			checkClean(t, dst)
			qemuImg(t, "compare", "-f", "qcow2", "-F", "raw", dst, src)
		})
	}
}

func TestConvertRaw(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	for _, size := range []int64{24<<20 + 12<<10, 1000001} {
		src := filepath.Join(dir, "src.raw")
		want := makeSource(t, src, size, uint64(size))
		dst := filepath.Join(dir, "dst.raw")
		convertFile(t, src, dst, ConvertOptions{Format: "raw"})
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("size %d: raw output differs from source", size)
		}
		// Sparse: no more allocated than the non-zero 4 KiB blocks.
		nonzero := int64(0)
		for off := 0; off < len(want); off += rawBlock {
			if !isZero(want[off:min(off+rawBlock, len(want))]) {
				nonzero += rawBlock
			}
		}
		// The host filesystem may add a block or two of extent tree.
		if a := allocated(t, dst); a > nonzero+64<<10 {
			t.Errorf("size %d: output allocates %d bytes, non-zero blocks are %d", size, a, nonzero)
		}
	}
}

func TestConvertOverlay(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	data := makeSource(t, base, 16<<20, 7)
	// The intended content: the base with some ranges rewritten, some
	// zeroed (over data and over holes), some left alone.
	rng := rand.New(rand.NewPCG(8, 8))
	for range 40 {
		off := rng.IntN(len(data) - 200<<10)
		n := rng.IntN(200 << 10)
		switch rng.IntN(3) {
		case 0:
			clear(data[off : off+n])
		default:
			for i := range n {
				data[off+i] = byte(rng.Uint32())
			}
		}
	}
	src := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts ConvertOptions
	}{
		{"64k", ConvertOptions{BackingFile: "base.raw", BackingFormat: "raw"}},
		{"512-zstd", ConvertOptions{BackingFile: "base.raw", ClusterSize: 512, Compression: "zstd"}},
		{"2m-zlib", ConvertOptions{BackingFile: "base.raw", BackingFormat: "raw", ClusterSize: 2 << 20, Compression: "zlib"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := filepath.Join(dir, tc.name)
			os.Mkdir(sub, 0o755)
			os.Link(base, filepath.Join(sub, "base.raw"))
			dst := filepath.Join(sub, "overlay.qcow2")
			convertFile(t, src, dst, tc.opts)
			checkClean(t, dst)
			info := qemuImg(t, "info", dst)
			if !strings.Contains(info, "backing file: base.raw") || !strings.Contains(info, "backing file format: raw") {
				t.Errorf("qemu-img info:\n%s", info)
			}
			qemuImg(t, "compare", "-f", "qcow2", "-F", "raw", dst, src)
			// Only clusters that differ from the base are stored: bound
			// the file by them plus a few clusters of metadata.
			cs := tc.opts.ClusterSize
			if cs == 0 {
				cs = 64 << 10
			}
			baseData, _ := os.ReadFile(base)
			ndiff := int64(0)
			for off := int64(0); off < int64(len(data)); off += cs {
				a, b := data[off:min(off+cs, int64(len(data)))], baseData[off:min(off+cs, int64(len(data)))]
				if string(a) != string(b) && !isZero(a) {
					ndiff++
				}
			}
			size := int64(len(data))
			meta := 6 + (size+cs*cs/8-1)/(cs*cs/8) + (ndiff+size/(cs*cs/8)+cs/2)/(cs/2)
			if st, _ := os.Stat(dst); st.Size() > (ndiff+meta)*cs {
				t.Errorf("overlay is %d bytes, %d clusters differ from the base", st.Size(), ndiff)
			}
		})
	}
}

func TestConvertCancel(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	makeSource(t, src, 8<<20, 3)
	img, err := OpenWith(src, Options{Format: FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, format := range []string{"raw", "qcow2"} {
		dst := filepath.Join(dir, "dst."+format)
		err := Convert(ctx, img, dst, ConvertOptions{Format: format})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: got %v, want context.Canceled", format, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cancelled conversion left files: %v", names)
	}
}

func TestConvertBadOptions(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	makeSource(t, src, 1<<20, 3)
	img, err := OpenWith(src, Options{Format: FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, opts := range []ConvertOptions{
		{Format: "vmdk"}, {Format: "raw", Compression: "zstd"}, {Format: "raw", BackingFile: "src.raw"},
		{Compression: "lz4"}, {ClusterSize: 1000}, {BackingFormat: "raw"},
		{BackingFile: "missing.raw"},
	} {
		if err := Convert(context.Background(), img, filepath.Join(dir, "out"), opts); err == nil {
			t.Errorf("Convert with %+v succeeded", opts)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("failed conversions left files behind: %d entries", len(ents))
	}
}
