package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/imagefmt/raw"
	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

// Tests against images qemu made, with qemu's view of each as the oracle
// (testimages/qcow2.go).

// openTest opens name and its backing chain as imagefmt would, with qcow2
// and raw only: this package cannot import imagefmt, which imports it.
func openTest(name string) (vdisk.Image, error) {
	return openTestDepth(name, "", 0)
}

func openTestDepth(name, format string, depth int) (vdisk.Image, error) {
	if depth > 16 {
		return nil, errors.New("test chain too deep")
	}
	f, err := vdisk.OpenOSFile(name)
	if err != nil {
		return nil, err
	}
	var magic [4]byte
	f.ReadAt(magic[:], 0)
	opts := vdisk.OpenOptions{
		Name: name,
		OpenBacking: func(n, fmt string) (vdisk.Image, error) {
			return openTestDepth(n, fmt, depth+1)
		},
		OpenFile: func(n string) (vdisk.File, error) { return vdisk.OpenOSFile(n) },
	}
	var img vdisk.Image
	if format == "raw" || (format == "" && string(magic[:]) != "QFI\xfb") {
		img, err = raw.Open(f, opts)
	} else {
		img, err = Open(f, opts)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

func mustOpen(t testing.TB, name string) vdisk.Image {
	t.Helper()
	img, err := openTest(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func TestFixturesRead(t *testing.T) {
	for _, fx := range testimages.Qcow2Fixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			img := mustOpen(t, fx.Path)
			checkRead(t, img, fx.Raw)
		})
	}
}

// checkRead compares img with the oracle raw file: the whole disk in large
// reads, the first 16 MiB and the last MiB again in odd sizes at unaligned
// offsets, and io.EOF at the end.
func checkRead(t *testing.T, img vdisk.Image, rawPath string) {
	t.Helper()
	want, err := os.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	st, _ := want.Stat()
	size := st.Size()
	if img.Size() != size {
		t.Fatalf("Size = %d, qemu-img says %d", img.Size(), size)
	}
	compare := func(off, end int64, chunk int) {
		got := make([]byte, chunk)
		exp := make([]byte, chunk)
		for o := off; o < end; o += int64(chunk) {
			n := int(min(int64(chunk), end-o))
			m, err := img.ReadAt(got[:n], o)
			if m != n || (err != nil && !(err == io.EOF && o+int64(n) == size)) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, o, m, err)
			}
			if _, err := want.ReadAt(exp[:n], o); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:n], exp[:n]) {
				i := firstDiff(got[:n], exp[:n])
				t.Fatalf("chunk %d: first difference at guest offset %d (0x%x): got %#x, want %#x", chunk, o+int64(i), o+int64(i), got[i], exp[i])
			}
		}
	}
	compare(0, size, 8<<20)
	for _, chunk := range []int{65536 + 512, 4096 - 17, 511} {
		compare(0, min(size, 16<<20), chunk)
		compare(max(0, size-1<<20-7), size, chunk)
	}
	buf := make([]byte, 1024)
	if n, err := img.ReadAt(buf, size-100); n != 100 || err != io.EOF {
		t.Errorf("read across the end = %d, %v; want 100, EOF", n, err)
	}
	if n, err := img.ReadAt(buf, size); n != 0 || err != io.EOF {
		t.Errorf("read at the end = %d, %v; want 0, EOF", n, err)
	}
	if n, err := img.ReadAt(nil, size); n != 0 || err != nil {
		t.Errorf("empty read at the end = %d, %v; want 0, nil", n, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestFixturesConcurrentRead has goroutines read random ranges of each
// image at once (FUSE does), compared with the oracle. Run with -race.
func TestFixturesConcurrentRead(t *testing.T) {
	for _, fx := range testimages.Qcow2Fixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			img := mustOpen(t, fx.Path)
			want, err := os.Open(fx.Raw)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			size := img.Size()
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					got, exp := make([]byte, 300<<10), make([]byte, 300<<10)
					for range 40 {
						off := rng.Int64N(size)
						n := int(min(int64(1+rng.IntN(len(got))), size-off))
						if _, err := img.ReadAt(got[:n], off); err != nil && err != io.EOF {
							errs <- err
							return
						}
						want.ReadAt(exp[:n], off)
						if !bytes.Equal(got[:n], exp[:n]) {
							errs <- fmt.Errorf("read of %d bytes at %d differs at +%d", n, off, firstDiff(got[:n], exp[:n]))
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// qemuExtents turns qemu-img map output into the extents vmmount reports:
// present data is Data of that depth, present non-data is Zero, the rest
// Unallocated. Holes of raw layers are zero to qemu, unallocated to
// vmmount.
func qemuExtents(t *testing.T, fx testimages.Qcow2Fixture) []vdisk.Extent {
	m, err := testimages.ReadQemuMapJSON(fx.Map)
	if err != nil {
		t.Fatal(err)
	}
	var out []vdisk.Extent
	for _, e := range m {
		x := vdisk.Extent{Off: e.Start, Len: e.Length, Kind: vdisk.Unallocated, Layer: -1}
		switch {
		case e.Present && e.Data:
			x.Kind, x.Layer = vdisk.Data, e.Depth
		case e.Present && !slices.Contains(fx.RawLayers, e.Depth):
			x.Kind, x.Layer = vdisk.Zero, e.Depth
		}
		out = appendExtent(out, x)
	}
	return out
}

func TestFixturesExtents(t *testing.T) {
	for _, fx := range testimages.Qcow2Fixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			img := mustOpen(t, fx.Path)
			want := qemuExtents(t, fx)
			got, err := img.Extents(0, img.Size())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("Extents differ from qemu-img map (-want +got):\n%s", diff)
			}
			// A window gives the same map, clipped.
			size := img.Size()
			for _, w := range [][2]int64{{12345, 3 << 20}, {size / 3, size / 2}, {size - 1000, 5000}, {size, 10}} {
				sub, err := img.Extents(w[0], w[1])
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(clip(want, w[0], w[1]), sub); diff != "" {
					t.Errorf("Extents(%d, %d) (-want +got):\n%s", w[0], w[1], diff)
				}
			}
			// This layer alone: the chain map with lower layers' extents
			// turned unallocated.
			q := img.(*Image)
			own, err := q.LayerExtents(0, size)
			if err != nil {
				t.Fatal(err)
			}
			var wantOwn []vdisk.Extent
			for _, e := range want {
				if e.Layer != 0 {
					e.Kind, e.Layer = vdisk.Unallocated, -1
				}
				wantOwn = appendExtent(wantOwn, e)
			}
			if diff := cmp.Diff(wantOwn, own); diff != "" {
				t.Errorf("LayerExtents (-want +got):\n%s", diff)
			}
		})
	}
}

// clip cuts an extent list to [off, off+length) of the disk.
func clip(ex []vdisk.Extent, off, length int64) []vdisk.Extent {
	var out []vdisk.Extent
	end := off + length
	for _, e := range ex {
		s, t := max(e.Off, off), min(e.Off+e.Len, end)
		if s < t {
			e.Off, e.Len = s, t-s
			out = append(out, e)
		}
	}
	return out
}

func TestFixturesInfo(t *testing.T) {
	for _, fx := range testimages.Qcow2Fixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			img := mustOpen(t, fx.Path)
			qchain, err := testimages.ReadQemuInfo(fx.Info)
			if err != nil {
				t.Fatal(err)
			}
			chain := img.Info().Chain()
			if len(chain) != len(qchain) || len(chain) != fx.Depth+1 {
				t.Fatalf("chain of %d images, qemu-img info says %d, recipe %d", len(chain), len(qchain), fx.Depth+1)
			}
			for i, q := range qchain {
				if diff := cmp.Diff(infoFromQemu(q), comparable(chain[i])); diff != "" {
					t.Errorf("layer %d (%s) differs from qemu-img info (-want +got):\n%s", i, chain[i].Filename, diff)
				}
			}
			// qemu-img's actual-size counts the image file only, and is
			// taken while ext4 may still be allocating: compare with
			// stat, counting the external data file too.
			want := blocks(t, fx.Path)
			if df := chain[0].DataFile; df != "" {
				want += blocks(t, vdisk.ResolveRelative(fx.Path, df))
			}
			if got := chain[0].AllocatedBytes; got != want {
				t.Errorf("AllocatedBytes = %d, stat says %d", got, want)
			}
		})
	}
}

// infoView is the part of vdisk.Info qemu-img info also reports.
type infoView struct {
	Format          string
	Version         int
	VirtualSize     int64
	ClusterSize     int64
	SubclusterSize  int64
	Compression     string
	BackingFilename string
	BackingFormat   string
	DataFile        string
	DataFileRaw     bool
	Dirty, Corrupt  bool
	Snapshots       []vdisk.Snapshot
	BitmapNames     []string
}

func comparable(in *vdisk.Info) infoView {
	v := infoView{Format: in.Format, Version: in.Version, VirtualSize: in.VirtualSize, ClusterSize: in.ClusterSize,
		SubclusterSize: in.SubclusterSize, Compression: in.Compression,
		BackingFilename: in.BackingFilename, BackingFormat: in.BackingFormat, DataFile: in.DataFile,
		DataFileRaw: in.DataFileRaw, Dirty: in.Dirty, Corrupt: in.Corrupt, Snapshots: in.Snapshots, BitmapNames: in.BitmapNames}
	for i := range v.Snapshots {
		v.Snapshots[i].DiskSize = 0 // qemu-img info does not show it
	}
	if in.Format != "qcow2" {
		v.ClusterSize = 0
	}
	return v
}

func infoFromQemu(q testimages.QemuImageInfo) infoView {
	d := q.FormatSpecific.Data
	v := infoView{Format: q.Format, VirtualSize: q.VirtualSize,
		BackingFilename: q.BackingFilename, BackingFormat: q.BackingFormat, DataFile: d.DataFile,
		DataFileRaw: d.DataFileRaw, Dirty: q.DirtyFlag, Corrupt: d.Corrupt, Compression: d.CompressionType}
	if q.Format == "qcow2" {
		v.ClusterSize = q.ClusterSize
		v.Version = 3
		if d.Compat == "0.10" {
			v.Version = 2
		}
		if d.ExtendedL2 {
			v.SubclusterSize = q.ClusterSize / SubclustersPerCluster
		}
	}
	for _, s := range q.Snapshots {
		v.Snapshots = append(v.Snapshots, vdisk.Snapshot{ID: s.ID, Name: s.Name, VMState: s.VMStateSize,
			DateSec: s.DateSec, DateNsec: s.DateNsec, VMClock: s.VMClockSec*1e9 + s.VMClockNsec})
	}
	for _, b := range q.FormatSpecific.Data.Bitmaps {
		v.BitmapNames = append(v.BitmapNames, b.Name)
	}
	return v
}

func blocks(t *testing.T, name string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// countingFile counts the reads that reach the image file.
type countingFile struct {
	vdisk.File
	mu    sync.Mutex
	reads [][2]int64
}

func (c *countingFile) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.reads = append(c.reads, [2]int64{off, int64(len(p))})
	c.mu.Unlock()
	return c.File.ReadAt(p, off)
}

// TestReadCoalesces: a read over clusters that follow each other in the
// file is one pread, once the tables are cached.
func TestReadCoalesces(t *testing.T) {
	var fx testimages.Qcow2Fixture
	for _, f := range testimages.Qcow2Fixtures(t) {
		if f.Name == "bitmaps" { // 1 MiB written at 0 in one request
			fx = f
		}
	}
	f, err := vdisk.OpenOSFile(fx.Path)
	if err != nil {
		t.Fatal(err)
	}
	cf := &countingFile{File: f}
	img, err := Open(cf, vdisk.OpenOptions{Name: fx.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	buf := make([]byte, 1<<20)
	img.ReadAt(buf, 0) // loads the L1 chunk and the L2 table
	cf.reads = nil
	if _, err := img.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if len(cf.reads) != 1 || cf.reads[0][1] != 1<<20 {
		t.Errorf("1 MiB of contiguous clusters read with %d preads: %v", len(cf.reads), cf.reads)
	}
}
