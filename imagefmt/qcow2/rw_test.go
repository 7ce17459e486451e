package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

func qemuImgRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// rwCase is an image and the raw file holding what it must read as.
type rwCase struct {
	name  string
	setup func(t *testing.T, dir string, rng *rand.Rand) (img string, want []byte)
}

func qemuCreate(cs int64, size int64, extra ...string) func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
	return func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
		p := filepath.Join(dir, "img.qcow2")
		args := append([]string{"create", "-q", "-f", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", cs)}, extra...)
		qemuImgRun(t, append(args, p, fmt.Sprint(size))...)
		return p, make([]byte, size)
	}
}

// TestRWProperty writes random ranges through RW and into a raw copy, then
// requires qemu-img check clean (no errors, no leaks) and qemu-img compare
// equal, for several cluster sizes, over a backing file, over compressed
// clusters and over zero clusters.
func TestRWProperty(t *testing.T) {
	requireQemu(t)
	cases := []rwCase{
		{"512", qemuCreate(512, 6<<20)},
		{"4k", qemuCreate(4096, 8<<20)},
		{"64k", qemuCreate(64<<10, 16<<20)},
		{"2m", qemuCreate(2<<20, 24<<20)},
		{"ours-64k", func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
			p := filepath.Join(dir, "img.qcow2")
			if err := Create(p, 16<<20, CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return p, make([]byte, 16<<20)
		}},
		{"backing-64k", func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
			base := randomBytes(rng, 12<<20)
			clear(base[3<<20 : 5<<20])
			if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "img.qcow2")
			qemuImgRun(t, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", p)
			return p, base
		}},
		{"backing-qcow2-512", func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
			base := randomBytes(rng, 4<<20)
			os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644)
			qemuImgRun(t, "convert", "-q", "-O", "qcow2", "-o", "cluster_size=4096", filepath.Join(dir, "base.raw"), filepath.Join(dir, "base.qcow2"))
			p := filepath.Join(dir, "img.qcow2")
			qemuImgRun(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", "base.qcow2", "-F", "qcow2", p)
			return p, base
		}},
		{"compressed-zstd", func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
			src := bytes.Repeat([]byte("compressible cluster data "), (8<<20)/26+1)[:8<<20]
			copy(src[1<<20:], randomBytes(rng, 1<<20))
			clear(src[5<<20 : 6<<20])
			os.WriteFile(filepath.Join(dir, "src.raw"), src, 0o644)
			p := filepath.Join(dir, "img.qcow2")
			qemuImgRun(t, "convert", "-q", "-c", "-O", "qcow2", "-o", "compression_type=zstd,cluster_size=16384", filepath.Join(dir, "src.raw"), p)
			return p, src
		}},
		{"zero-clusters", func(t *testing.T, dir string, rng *rand.Rand) (string, []byte) {
			base := randomBytes(rng, 4<<20)
			os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644)
			p := filepath.Join(dir, "img.qcow2")
			qemuImgRun(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", p)
			// Zero clusters over the backing data, unallocated and allocated.
			out, err := exec.Command("qemu-io", "-c", "write -z 0 1M", "-c", "write -P 7 2M 64k", "-c", "write -z -u 2M 64k", p).CombinedOutput()
			if err != nil {
				t.Fatalf("qemu-io: %v\n%s", err, out)
			}
			clear(base[:1<<20])
			clear(base[2<<20 : 2<<20+64<<10])
			return p, base
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			p, want := tc.setup(t, dir, rng)
			qemuCheck(t, p)
			rw, err := OpenRW(p)
			if err != nil {
				t.Fatal(err)
			}
			cs := rw.Header().ClusterSize
			size := int64(len(want))
			if rw.Size() != size {
				t.Fatalf("size %d, want %d", rw.Size(), size)
			}
			ops := 300
			for op := range ops {
				var off int64
				switch rng.IntN(3) {
				case 0: // near a cluster boundary
					off = rng.Int64N(size/cs)*cs + int64(rng.IntN(65)) - 32
				default:
					off = rng.Int64N(size)
				}
				off = max(0, min(off, size-1))
				var n int64
				switch rng.IntN(4) {
				case 0:
					n = int64(1 + rng.IntN(64))
				case 1:
					n = cs
				default:
					n = int64(1 + rng.IntN(int(min(3*cs, 256<<10))))
				}
				n = min(n, size-off)
				if rng.IntN(8) == 0 {
					// Whole clusters, aligned: the zero-cluster path.
					off = rng.Int64N(size/cs) * cs
					n = min(cs*int64(1+rng.IntN(3)), size-off)
				}
				var data []byte
				if rng.IntN(4) == 0 {
					data = make([]byte, n)
				} else {
					data = randomBytes(rng, int(n))
				}
				if got, err := rw.WriteAt(data, off); err != nil || got != len(data) {
					t.Fatalf("op %d: WriteAt(%d bytes at %d) = %d, %v", op, n, off, got, err)
				}
				copy(want[off:], data)
				if op%10 == 0 {
					roff := rng.Int64N(size)
					rn := min(int64(1+rng.IntN(int(2*cs+100))), size-roff)
					got := make([]byte, rn)
					if _, err := rw.ReadAt(got, roff); err != nil {
						t.Fatalf("op %d: ReadAt: %v", op, err)
					}
					if !bytes.Equal(got, want[roff:roff+rn]) {
						t.Fatalf("op %d: ReadAt(%d, %d) differs from the raw copy", op, roff, rn)
					}
				}
				if op == ops/2 {
					// Half way, still open: the image on disk is already
					// consistent (-U: we hold the write lock).
					if err := rw.Flush(); err != nil {
						t.Fatal(err)
					}
					qemuCheck(t, p, "-U")
				}
			}
			if err := rw.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, p)
			r := filepath.Join(dir, "want.raw")
			if err := os.WriteFile(r, want, 0o644); err != nil {
				t.Fatal(err)
			}
			qemuCompare(t, p, "qcow2", r, "raw")
			// Reopen and reread everything through RW too.
			rw, err = OpenRW(p)
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			got := make([]byte, size)
			if _, err := rw.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("reread through RW differs")
			}
		})
	}
}

// TestRWRefuses checks that images RW cannot write are refused by name.
func TestRWRefuses(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	mk := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		qemuImgRun(t, append(append([]string{"create", "-q", "-f", "qcow2"}, args...), p, "4M")...)
		return p
	}
	setBit := func(p string, bit uint64) {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var b [8]byte
		f.ReadAt(b[:], 72)
		b[7] |= byte(bit)
		f.WriteAt(b[:], 72)
	}
	dirty := mk("dirty.qcow2")
	setBit(dirty, IncompatDirty)
	corrupt := mk("corrupt.qcow2")
	setBit(corrupt, IncompatCorrupt)
	bitmap := mk("bitmap.qcow2")
	qemuImgRun(t, "bitmap", "--add", bitmap, "b0")
	for _, tc := range []struct{ path, want string }{
		{dirty, "dirty"},
		{corrupt, "corrupt"},
		{bitmap, "bitmap"},
		{mk("ext.qcow2", "-o", "extended_l2=on"), "extended L2"},
		{mk("data.qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw")), "data file"},
		{mk("rc1.qcow2", "-o", "refcount_bits=1"), "refcount"},
	} {
		rw, err := OpenRW(tc.path)
		if err == nil {
			rw.Close()
			t.Errorf("%s: OpenRW succeeded", tc.path)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, vdisk.ErrUnsupported) {
			t.Errorf("%s: error %q does not name %q or is not ErrUnsupported", tc.path, err, tc.want)
		}
	}
	// A second writer is refused while one has the image open.
	p := mk("busy.qcow2")
	rw, err := OpenRW(p)
	if err != nil {
		t.Fatal(err)
	}
	if rw2, err := OpenRW(p); err == nil {
		rw2.Close()
		t.Error("second OpenRW of the same image succeeded")
	}
	rw.Close()

	// An image a QEMU process has open for writing (qemu-io sleeping
	// holds the same locks as a running VM) is refused.
	vm := mk("vm.qcow2")
	qio := exec.Command("qemu-io", "-c", "sleep 20000", vm)
	if err := qio.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { qio.Process.Kill(); qio.Wait() }()
	refused := false
	for range 100 { // until qemu-io has opened the image
		rw, err := OpenRW(vm)
		if err != nil {
			if !strings.Contains(err.Error(), "in use") {
				t.Fatalf("OpenRW of an image QEMU holds: %v", err)
			}
			refused = true
			break
		}
		rw.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if !refused {
		t.Error("OpenRW of an image a QEMU process holds succeeded")
	}

	if _, err := OpenRW(filepath.Join(dir, "missing.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing image: %v", err)
	}
}

// FuzzRW opens crafted images for writing and writes into them: metadata
// that lies must give errors, never a panic or a write outside the file's
// clusters.
func FuzzRW(f *testing.F) {
	// Seeds: small images written by Writer with every kind of cluster
	// (data, zero, compressed) and 512 B clusters, so a few hundred bytes
	// of tables are all there is to mutate.
	dir := f.TempDir()
	for i, opts := range []CreateOptions{{ClusterSize: 512}, {ClusterSize: 512, Compression: "zlib"}, {ClusterSize: 1024, Compression: "zstd"}} {
		p := filepath.Join(dir, fmt.Sprintf("seed%d.qcow2", i))
		fw, err := os.Create(p)
		if err != nil {
			f.Fatal(err)
		}
		w, err := NewWriter(fw, 64<<10, opts)
		if err != nil {
			f.Fatal(err)
		}
		cs := w.ClusterSize()
		comp, _ := NewCompressor(opts.Compression, cs)
		text := bytes.Repeat([]byte("seed "), int(cs))[:cs]
		cls := []Cluster{{Kind: ClusterData, Data: text}, {Kind: ClusterZero}, {}, {Kind: ClusterData, Data: bytes.Repeat([]byte{9}, int(cs))}}
		if c, ok := comp.Compress(nil, text); ok && opts.Compression != "" {
			cls[2] = Cluster{Kind: ClusterCompressed, Data: c}
		}
		if err := w.WriteClusters(3, cls); err != nil {
			f.Fatal(err)
		}
		if err := w.Close(context.Background()); err != nil {
			f.Fatal(err)
		}
		fw.Close()
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, int64(i*700), uint16(700*i+100))
	}
	f.Fuzz(func(t *testing.T, b []byte, off int64, n uint16) {
		if len(b) > 1<<20 {
			return
		}
		// RW fsyncs on Close: on a busy disk that costs seconds per
		// input, so fuzz in memory when /dev/shm is there.
		dir := t.TempDir()
		if d, err := os.MkdirTemp("/dev/shm", "fuzzrw-"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
		p := filepath.Join(dir, "f.qcow2")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rw, err := OpenRW(p)
		if err != nil {
			return
		}
		defer rw.Close()
		if rw.Size() <= 0 {
			return
		}
		off = max(0, off%rw.Size())
		data := bytes.Repeat([]byte{0x5a}, int(min(int64(n), rw.Size()-off)))
		if _, err := rw.WriteAt(data, off); err != nil {
			return
		}
		got := make([]byte, len(data))
		if _, err := rw.ReadAt(got, off); err != nil {
			return
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read back differs after a successful write")
		}
	})
}

// TestRWRefcountGrowth fills an image with 512-byte clusters, whose first
// refcount table (one cluster) counts only 8 MiB of file, so the table
// must move and grow twice while blocks are created on the way.
func TestRWRefcountGrowth(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "g.qcow2")
	const size = 20 << 20
	qemuImgRun(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, fmt.Sprint(size))
	rw, err := OpenRW(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	want := randomBytes(rng, size)
	clear(want[4<<20 : 5<<20])
	for off := 0; off < size; off += 1 << 20 {
		if _, err := rw.WriteAt(want[off:off+1<<20], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	tableOff := rw.rc.tableOff
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if tableOff == 512 {
		t.Errorf("refcount table did not move")
	}
	qemuCheck(t, p)
	r := filepath.Join(dir, "want.raw")
	os.WriteFile(r, want, 0o644)
	qemuCompare(t, p, "qcow2", r, "raw")
}

// TestRWSnapshots writes through RW into an image with internal snapshots:
// shared L2 tables and clusters must be copied, the snapshots must still
// read as they were, and the refcounts must stay exact.
func TestRWSnapshots(t *testing.T) {
	requireQemu(t)
	for _, cs := range []int64{512, 65536} {
		t.Run(fmt.Sprint(cs), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(cs), 3))
			size := int64(6 << 20)
			want := randomBytes(rng, int(size))
			clear(want[1<<20 : 2<<20])
			src := filepath.Join(dir, "src.raw")
			os.WriteFile(src, want, 0o644)
			p := filepath.Join(dir, "img.qcow2")
			qemuImgRun(t, "convert", "-q", "-O", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", cs), src, p)
			qemuImgRun(t, "snapshot", "-c", "s1", p)
			// Change part of the active layer with qemu, then snapshot again.
			if out, err := exec.Command("qemu-io", "-c", "write -P 0x11 3M 100k", p).CombinedOutput(); err != nil {
				t.Fatalf("qemu-io: %v\n%s", err, out)
			}
			s1 := bytes.Clone(want)
			for i := 3 << 20; i < 3<<20+100<<10; i++ {
				want[i] = 0x11
			}
			qemuImgRun(t, "snapshot", "-c", "s2", p)
			s2 := bytes.Clone(want)

			rw, err := OpenRW(p)
			if err != nil {
				t.Fatal(err)
			}
			for range 200 {
				off := rng.Int64N(size)
				n := min(int64(1+rng.IntN(int(3*cs))), size-off)
				data := randomBytes(rng, int(n))
				if _, err := rw.WriteAt(data, off); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], data)
			}
			if err := rw.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, p)
			for name, content := range map[string][]byte{"": want, "s1": s1, "s2": s2} {
				r := filepath.Join(dir, "want"+name+".raw")
				os.WriteFile(r, content, 0o644)
				if name == "" {
					qemuCompare(t, p, "qcow2", r, "raw")
					continue
				}
				out := filepath.Join(dir, name+".raw")
				qemuImgRun(t, "convert", "-q", "-l", "snapshot.name="+name, "-O", "raw", p, out)
				got, _ := os.ReadFile(out)
				if !bytes.Equal(got, content) {
					t.Errorf("snapshot %s changed", name)
				}
			}
		})
	}
}

// TestRWZeroCluster checks that a whole cluster of zeros over data the
// image does not own (backing data, a compressed cluster) becomes a zero
// cluster rather than a new allocated one, and still reads as zeros.
func TestRWZeroCluster(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	base := bytes.Repeat([]byte{0xab}, 1<<20)
	os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644)
	p := filepath.Join(dir, "img.qcow2")
	qemuImgRun(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", p)
	rw, err := OpenRW(p)
	if err != nil {
		t.Fatal(err)
	}
	end := rw.end
	if _, err := rw.WriteAt(make([]byte, 8192), 4096); err != nil {
		t.Fatal(err)
	}
	for gc := int64(1); gc <= 2; gc++ {
		if e, _, err := rw.entry(gc, false); err != nil || e != L2Zero {
			t.Errorf("cluster %d: entry %#x, %v; want a zero cluster", gc, e, err)
		}
	}
	// Only the L2 table was allocated.
	if rw.end != end+4096 {
		t.Errorf("file grew by %d bytes", rw.end-end)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, p)
	clear(base[4096:12288])
	os.WriteFile(filepath.Join(dir, "want.raw"), base, 0o644)
	qemuCompare(t, p, "qcow2", filepath.Join(dir, "want.raw"), "raw")
}
