package qcow2

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCreateEmpty(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		size int64
		opts CreateOptions
	}{
		{0, CreateOptions{}},
		{1 << 20, CreateOptions{}},
		{1000, CreateOptions{ClusterSize: 512}},
		{64 << 30, CreateOptions{ClusterSize: 512}},
		{1 << 40, CreateOptions{ClusterSize: 2 << 20, Compression: "zstd"}},
		{5 << 30, CreateOptions{ClusterSize: 4096, Compression: "zlib"}},
	} {
		p := filepath.Join(dir, strconv.FormatInt(tc.size, 10)+"-"+strconv.FormatInt(tc.opts.ClusterSize, 10)+".qcow2")
		if err := Create(p, tc.size, tc.opts); err != nil {
			t.Fatal(err)
		}
		qemuCheck(t, p)
	}
}

func TestCreateRejects(t *testing.T) {
	dir := t.TempDir()
	for _, opts := range []CreateOptions{
		{ClusterSize: 256}, {ClusterSize: 4 << 20}, {ClusterSize: 3000},
		{Compression: "lz4"}, {BackingFormat: "raw"},
		{ClusterSize: 512, BackingFile: string(bytes.Repeat([]byte("a"), 600))},
	} {
		p := filepath.Join(dir, "x.qcow2")
		if err := Create(p, 1<<20, opts); err == nil {
			t.Errorf("Create with %+v succeeded", opts)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("Create with %+v left %s behind", opts, p)
		}
	}
	if err := Create(filepath.Join(dir, "big"), 1<<50, CreateOptions{ClusterSize: 512}); err == nil {
		t.Errorf("Create of 1 PiB with 512 B clusters succeeded")
	}
}

// writeImage streams random clusters of every kind through a Writer and
// returns the raw content the image must read as (no backing file). Data
// comes in runs of clusters that are one buffer or several, aligned or not,
// small (staged, O_DIRECT) or big (page cache). io is "" (O_DIRECT where possible),
// "buffered" (O_DIRECT off) or "einval" (O_DIRECT refused after a few
// writes, as by a filesystem wanting a bigger alignment).
func writeImage(t *testing.T, path string, size int64, opts CreateOptions, seed uint64, io string) []byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case io == "buffered":
		w.closeDirect()
	case w.direct == nil && w.ClusterSize()%directAlign == 0:
		t.Logf("the filesystem of %s refuses O_DIRECT: only page-cache writes are tested", path)
	case io == "einval":
		n := 0
		directPwritev = func(f *os.File, bufs [][]byte, off int64) error {
			if n++; n > 3 {
				return unix.EINVAL
			}
			return pwritev(f, bufs, off)
		}
		t.Cleanup(func() { directPwritev = pwritev })
	}
	cs := w.ClusterSize()
	want := make([]byte, w.Size())
	rng := rand.New(rand.NewPCG(seed, 1))
	comp, err := NewCompressor(opts.Compression, cs)
	if err != nil {
		t.Fatal(err)
	}
	nvc := (w.Size() + cs - 1) / cs
	vc := int64(0)
	for vc < nvc {
		vc += int64(rng.IntN(3)) // gaps stay unallocated
		n := min(int64(1+rng.IntN(40)), nvc-vc)
		if n <= 0 {
			break
		}
		cls := make([]Cluster, n)
		run := make([]byte, n*cs+512)
		switch rng.IntN(3) {
		case 0:
			run = run[512:] // not aligned
		case 1:
			run = nil // a buffer per cluster
		}
		for i := range cls {
			data := make([]byte, cs)
			if run != nil {
				data = run[int64(i)*cs : int64(i+1)*cs]
			}
			switch rng.IntN(5) {
			case 0:
				cls[i].Kind = ClusterZero
				continue
			case 1:
				cls[i].Kind = ClusterUnallocated
				continue
			case 2: // incompressible
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
			default: // compressible
				for j := 0; j < len(data); j += 16 {
					data[j] = byte(rng.IntN(4))
				}
				if rng.IntN(4) == 0 {
					for j := range data {
						data[j] = 0xff
					}
				}
			}
			copy(want[(vc+int64(i))*cs:], data)
			cls[i] = Cluster{Kind: ClusterData, Data: data}
			if opts.Compression != "" && rng.IntN(4) != 0 {
				if c, ok := comp.Compress(nil, data); ok {
					cls[i] = Cluster{Kind: ClusterCompressed, Data: c}
				}
			}
		}
		if err := w.WriteClusters(vc, cls); err != nil {
			t.Fatal(err)
		}
		vc += n
	}
	if io == "einval" && w.direct != nil && w.direct.f != nil {
		t.Error("still writing through O_DIRECT after EINVAL")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return want
}

func TestWriterQemu(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		size int64
		opts CreateOptions
		io   string
	}{
		{3<<20 + 700, CreateOptions{ClusterSize: 512}, ""},
		{1 << 20, CreateOptions{ClusterSize: 512, Compression: "zlib"}, ""},
		{1 << 20, CreateOptions{ClusterSize: 512, Compression: "zstd"}, ""},
		{20 << 20, CreateOptions{}, ""},
		{20 << 20, CreateOptions{Compression: "zlib"}, ""},
		{20 << 20, CreateOptions{Compression: "zstd"}, ""},
		{24 << 20, CreateOptions{ClusterSize: 2 << 20, Compression: "zstd"}, ""},
		{24 << 20, CreateOptions{ClusterSize: 2 << 20, Compression: "zlib"}, ""},
		{8 << 20, CreateOptions{ClusterSize: 4096, Compression: "zstd"}, ""},
		{64 << 20, CreateOptions{}, ""},
		{64 << 20, CreateOptions{}, "buffered"},
		{64 << 20, CreateOptions{}, "einval"},
		{64 << 20, CreateOptions{ClusterSize: 2 << 20}, ""},
	} {
		name := strconv.FormatInt(tc.opts.ClusterSize, 10) + "-" + tc.opts.Compression + "-" + strconv.FormatInt(tc.size, 10)
		if tc.io != "" {
			name += "-" + tc.io
		}
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".qcow2")
			want := writeImage(t, p, tc.size, tc.opts, uint64(tc.size), tc.io)
			qemuCheck(t, p)
			r := filepath.Join(dir, name+".raw")
			if err := os.WriteFile(r, want, 0o644); err != nil {
				t.Fatal(err)
			}
			qemuCompare(t, p, "qcow2", r, "raw")
		})
	}
}

// TestWriterRefcountSaturation packs so many tiny compressed clusters that
// one 2 MiB host cluster would hold more than 65535 of them: the writer
// must move on to a new host cluster before the 16-bit refcount overflows.
// No real compressor makes a 2 MiB cluster this small, so the "compressed"
// bytes are fake: qemu-img check counts references without inflating.
func TestWriterRefcountSaturation(t *testing.T) {
	requireQemu(t)
	const cs = 2 << 20
	const n = 140000
	p := filepath.Join(t.TempDir(), "sat.qcow2")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, n*cs, CreateOptions{ClusterSize: cs, Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	cls := make([]Cluster, 1000)
	for i := range cls {
		cls[i] = Cluster{Kind: ClusterCompressed, Data: []byte("0123456789abcdef")}
	}
	for vc := int64(0); vc < n; vc += int64(len(cls)) {
		if err := w.WriteClusters(vc, cls); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, p)
}

func TestCreateOverlay(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	base := bytes.Repeat([]byte("base image bytes"), 1<<16) // 1 MiB
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []CreateOptions{
		{BackingFile: "base.raw", BackingFormat: "raw"},
		{BackingFile: "base.raw", BackingFormat: "raw", ClusterSize: 512, Compression: "zstd"},
		{BackingFile: filepath.Join(dir, "base.raw"), BackingFormat: "raw", ClusterSize: 2 << 20},
	} {
		p := filepath.Join(dir, "ovl.qcow2")
		os.Remove(p)
		if err := Create(p, int64(len(base)), opts); err != nil {
			t.Fatal(err)
		}
		qemuCheck(t, p)
		out, err := exec.Command("qemu-img", "info", p).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("backing file: "+opts.BackingFile)) || !bytes.Contains(out, []byte("backing file format: raw")) {
			t.Errorf("qemu-img info: %v\n%s", err, out)
		}
		qemuCompare(t, p, "qcow2", filepath.Join(dir, "base.raw"), "raw")
	}
}

// A writer given up before Close (a failed or cancelled copy) releases its
// second, O_DIRECT, descriptor in Abort.
func TestWriterAbortReleases(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "x.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := fds()
	w, err := NewWriter(f, 8<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteClusters(3, []Cluster{{Kind: ClusterData, Data: make([]byte, w.ClusterSize())}}); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if after := fds(); after != before {
		t.Errorf("%d descriptors open after Abort, %d before the writer", after, before)
	}
	if err := w.WriteClusters(4, []Cluster{{Kind: ClusterZero}}); err == nil {
		t.Error("an aborted writer accepted clusters")
	}
}
