package vhdx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

var qemuVariants = []testimages.VDiskVariant{
	{Name: "dynamic.vhdx", Format: "vhdx", Options: "subformat=dynamic"},
	{Name: "block1m.vhdx", Format: "vhdx", Options: "subformat=dynamic,block_size=1M"},
	{Name: "block32m.vhdx", Format: "vhdx", Options: "subformat=dynamic,block_size=32M"},
	{Name: "block256m.vhdx", Format: "vhdx", Options: "subformat=dynamic,block_size=256M"},
	{Name: "fixed.vhdx", Format: "vhdx", Options: "subformat=fixed,block_size=1M"},
	{Name: "log8m.vhdx", Format: "vhdx", Options: "subformat=dynamic,log_size=8M"},
}

func fixtures(t testing.TB) string {
	return testimages.VDiskImages(t, "vhdx", "v1", qemuVariants)
}

// openChain opens path and its parents with this package only.
func openChain(t testing.TB, path string) (vdisk.Image, error) {
	t.Helper()
	var open func(name string, depth int) (vdisk.Image, error)
	open = func(name string, depth int) (vdisk.Image, error) {
		if depth > 8 {
			return nil, vdisk.ErrBackingLoop
		}
		f, err := vdisk.OpenOSFile(name)
		if err != nil {
			if depth > 0 && errors.Is(err, os.ErrNotExist) {
				return nil, errors.Join(vdisk.ErrBackingMissing, err)
			}
			return nil, err
		}
		img, err := Open(f, vdisk.OpenOptions{Name: name, OpenBacking: func(n, format string) (vdisk.Image, error) {
			return open(n, depth+1)
		}})
		if err != nil {
			f.Close()
		}
		return img, err
	}
	return open(path, 0)
}

func mustOpen(t testing.TB, path string) vdisk.Image {
	t.Helper()
	img, err := openChain(t, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

// checkHoles checks the extents tile the disk and that every range not
// reported as data reads as zeros in the oracle (qemu-img map reports all
// of a VHDX as data, so it cannot be compared directly).
func checkHoles(t testing.TB, img vdisk.Image, rawPath string) []vdisk.Extent {
	t.Helper()
	want, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := img.Extents(0, img.Size())
	if err != nil {
		t.Fatal(err)
	}
	pos := int64(0)
	for _, e := range ext {
		if e.Off != pos || e.Len <= 0 {
			t.Fatalf("extents not contiguous at %d: %+v", pos, e)
		}
		pos += e.Len
		if e.Kind != vdisk.Data && bytes.Count(want[e.Off:e.Off+e.Len], []byte{0}) != int(e.Len) {
			t.Errorf("extent %+v holds data in the oracle", e)
		}
	}
	if pos != img.Size() {
		t.Fatalf("extents cover %d bytes, size %d", pos, img.Size())
	}
	return ext
}

func TestQemuImages(t *testing.T) {
	dir := fixtures(t)
	for _, v := range qemuVariants {
		t.Run(v.Name, func(t *testing.T) {
			path := filepath.Join(dir, v.Name)
			img := mustOpen(t, path)
			testimages.CheckVDiskRead(t, img, path+".raw")
			testimages.CheckVDiskConcurrent(t, img, path+".raw")
			ext := checkHoles(t, img, path+".raw")
			info := img.Info()
			if info.Format != "vhdx" || info.VirtualSize != img.Size() || info.LogicalBlock != 512 || info.UUID == "" {
				t.Errorf("info %+v", info)
			}
			if len(info.Warnings) > 0 {
				t.Errorf("warnings on a clean image: %q", info.Warnings)
			}
			if v.Name == "block1m.vhdx" {
				// Blocks with source data are allocated, the others not.
				var data int64
				for _, e := range ext {
					if e.Kind == vdisk.Data {
						data += e.Len
					}
				}
				if data != 6<<20+1536 {
					t.Errorf("%d bytes allocated, want the 6 blocks that hold data and the short last one", data)
				}
			}
		})
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSector4K: 4096-byte logical sectors, which Hyper-V makes and qemu
// neither makes nor reads (it refuses them since 5.2). The same content
// written with 512-byte sectors is checked against qemu, the 4K image
// against libvhdi; ours must read the same.
func TestSector4K(t *testing.T) {
	dir := fixtures(t)
	src, err := os.ReadFile(filepath.Join(dir, "source.raw"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	size := int64(len(src)) / 4096 * 4096
	want := bytes.Clone(src[:size])
	clear(want[10*MiB : 12*MiB])
	writeFile(t, filepath.Join(tmp, "want.raw"), want)
	for _, sector := range []int64{512, 4096} {
		d := &testDisk{size: size, blockSize: 2 * MiB, sector: sector, diskID: GUID{7},
			sectors: map[int64][]byte{}, states: map[int64]uint8{5: PayloadZero}}
		for s := int64(0); s < size/sector; s++ {
			if sec := want[s*sector : (s+1)*sector]; bytes.Count(sec, []byte{0}) != int(sector) {
				d.sectors[s] = sec
			}
		}
		path := filepath.Join(tmp, fmt.Sprintf("sector%d.vhdx", sector))
		writeFile(t, path, d.build())
		if sector == 512 {
			if err := testimages.VDiskOracle(path, "vhdx"); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path + ".raw"); !bytes.Equal(got, want) {
				t.Fatalf("qemu-img reads the crafted 512-byte-sector image differently")
			}
		} else {
			checkVhdi(t, path, want)
		}
		img := mustOpen(t, path)
		testimages.CheckVDiskRead(t, img, filepath.Join(tmp, "want.raw"))
		ext := checkHoles(t, img, filepath.Join(tmp, "want.raw"))
		if img.Info().LogicalBlock != int(sector) {
			t.Errorf("logical sector size %d", img.Info().LogicalBlock)
		}
		var zero bool
		for _, e := range ext {
			zero = zero || (e.Kind == vdisk.Zero && e.Off == 10*MiB && e.Len == 2*MiB)
		}
		if !zero {
			t.Errorf("ZERO block not reported: %+v", ext)
		}
	}
}

// TestDifferencing crafts a differencing disk over a qemu-made parent
// (qemu-img does not read differencing VHDX, so the expected bytes are the
// parent's oracle overlaid with the child's sectors).
func TestDifferencing(t *testing.T) {
	dir := fixtures(t)
	parentRaw, err := os.ReadFile(filepath.Join(dir, "block1m.vhdx.raw"))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := os.ReadFile(filepath.Join(dir, "block1m.vhdx"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	writeFile(t, filepath.Join(tmp, "parent.vhdx"), pb)
	pimg := mustOpen(t, filepath.Join(tmp, "parent.vhdx")).(*Image)
	want := bytes.Clone(parentRaw)
	d := &testDisk{size: int64(len(parentRaw)), blockSize: MiB, sector: 512, diskID: GUID{8},
		parentLink: pimg.hdr.DataWriteGUID, parentRel: `.\parent.vhdx`, parentAbs: `C:\Hyper-V\parent.vhdx`,
		sectors: map[int64][]byte{}, states: map[int64]uint8{3: PayloadZero, 4: PayloadUnmapped}}
	for _, s := range []int64{0, 1, 7, 300, 2047, 2048 + 5, 10000, int64(len(parentRaw))/512 - 1} {
		sec := bytes.Repeat([]byte{byte(s), 0x6b}, 256)
		d.sectors[s] = sec
		copy(want[s*512:], sec)
	}
	for s := int64(9 * 2048); s < 10*2048; s++ { // block 9 fully present
		sec := bytes.Repeat([]byte{0x9f}, 512)
		d.sectors[s] = sec
		copy(want[s*512:], sec)
	}
	clear(want[3*MiB : 5*MiB])
	child := filepath.Join(tmp, "child.vhdx")
	writeFile(t, child, d.build())
	writeFile(t, child+".want", want)
	// libvhdi, an independent reader, must see what we expect, except in
	// the ZERO and UNMAPPED blocks: libvhdi 20210425 reads every block not
	// present from the parent, where [MS-VHDX] 2.5.1.1 makes ZERO blocks
	// read zeros (and qemu and Hyper-V read zeros for UNMAPPED ones).
	checkVhdi(t, child, want, [2]int64{3 * MiB, 5 * MiB})
	img := mustOpen(t, child)
	testimages.CheckVDiskRead(t, img, child+".want")
	info := img.Info()
	if info.Subformat != "differencing" || info.BackingFilename != "parent.vhdx" || info.Backing == nil || len(info.Warnings) != 0 {
		t.Errorf("info %+v", info)
	}
	ext, err := img.Extents(0, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if ext[0] != (vdisk.Extent{Off: 0, Len: 1024, Kind: vdisk.Data, Layer: 0}) ||
		ext[1] != (vdisk.Extent{Off: 1024, Len: 2560, Kind: vdisk.Data, Layer: 1}) {
		t.Errorf("extents %+v", ext)
	}
	ext, _ = img.Extents(3*MiB, 2*MiB)
	if len(ext) != 1 || ext[0].Kind != vdisk.Zero || ext[0].Layer != 0 {
		t.Errorf("zero blocks %+v", ext)
	}

	// A changed parent is a warning.
	d.parentLink = GUID{0xee}
	writeFile(t, child, d.build())
	if w := mustOpen(t, child).Info().Warnings; len(w) != 1 {
		t.Errorf("warnings %q", w)
	}
	os.Remove(filepath.Join(tmp, "parent.vhdx"))
	if _, err := openChain(t, child); !errors.Is(err, vdisk.ErrBackingMissing) {
		t.Errorf("missing parent: %v", err)
	}
}

// checkVhdi fails the test unless libvhdi reads image as want, outside
// the skip ranges.
func checkVhdi(t testing.TB, image string, want []byte, skip ...[2]int64) {
	t.Helper()
	testimages.RequireTools(t, "vhdimount")
	testimages.RequireRoot(t)
	if err := testimages.VhdiOracle(image, image+".vhdi"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(image + ".vhdi")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("libvhdi reads %d bytes, want %d", len(got), len(want))
	}
	for _, r := range skip {
		copy(got[r[0]:r[1]], want[r[0]:r[1]])
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("libvhdi reads %s differently at %d: % x, want % x", image, i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
		}
	}
}
