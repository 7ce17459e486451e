package vhd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
	"github.com/vmmount/vmmount/testimages"
)

var qemuVariants = []testimages.VDiskVariant{
	{Name: "dynamic.vhd", Format: "vpc", Options: "subformat=dynamic"},
	{Name: "fixed.vhd", Format: "vpc", Options: "subformat=fixed"},
	{Name: "dynamic-force.vhd", Format: "vpc", Options: "subformat=dynamic,force_size=on"},
	{Name: "fixed-force.vhd", Format: "vpc", Options: "subformat=fixed,force_size=on"},
}

func fixtures(t testing.TB) string {
	return testimages.VDiskImages(t, "vhd", "v1", qemuVariants)
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
			if format != "vpc" {
				t.Errorf("parent format %q", format)
			}
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

func dataExtents(t testing.TB, img vdisk.Image) []testimages.VDiskExtent {
	t.Helper()
	ext, err := img.Extents(0, img.Size())
	if err != nil {
		t.Fatal(err)
	}
	var out []testimages.VDiskExtent
	pos := int64(0)
	for _, e := range ext {
		if e.Off != pos || e.Len <= 0 {
			t.Fatalf("extents not contiguous at %d: %+v", pos, e)
		}
		pos += e.Len
		out = append(out, testimages.VDiskExtent{Off: e.Off, Len: e.Len, Data: e.Kind == vdisk.Data})
	}
	if pos != img.Size() {
		t.Fatalf("extents cover %d bytes, size %d", pos, img.Size())
	}
	return out
}

func TestQemuImages(t *testing.T) {
	dir := fixtures(t)
	for _, v := range qemuVariants {
		t.Run(v.Name, func(t *testing.T) {
			path := filepath.Join(dir, v.Name)
			img := mustOpen(t, path)
			testimages.CheckVDiskRead(t, img, path+".raw")
			testimages.CheckVDiskConcurrent(t, img, path+".raw")
			testimages.CheckVDiskDataMap(t, dataExtents(t, img), path+".map.json")
			info := img.Info()
			if info.Format != "vpc" || info.VirtualSize != img.Size() || info.UUID == "" {
				t.Errorf("info %+v", info)
			}
			if len(info.Warnings) > 0 {
				t.Errorf("warnings on a clean image: %q", info.Warnings)
			}
		})
	}
}

// TestDifferencing crafts a differencing disk over a qemu-made parent: sectors
// whose bitmap bit is set come from the child, the rest from the parent.
func TestDifferencing(t *testing.T) {
	dir := fixtures(t)
	tmp := t.TempDir()
	parentRaw, err := os.ReadFile(filepath.Join(dir, "dynamic-force.vhd.raw"))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := os.ReadFile(filepath.Join(dir, "dynamic-force.vhd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "parent.vhd"), pb, 0o644); err != nil {
		t.Fatal(err)
	}
	parentFooter := DecodeFooter(pb[len(pb)-FooterSize:])
	want := bytes.Clone(parentRaw)
	d := &testDisk{size: int64(len(parentRaw)), blockSize: 2 << 20, diskType: TypeDifferencing,
		uniqueID: [16]byte{1, 2, 3}, parentID: parentFooter.UniqueID,
		parentRel: `.\parent.vhd`, parentAbs: `C:\VMs\elsewhere\parent.vhd`, parentName: "parent.vhd",
		sectors: map[int64][]byte{}}
	// Child sectors: over parent data, over parent holes, a run crossing a
	// block boundary, the last sector.
	last := int64(len(parentRaw))/SectorSize - 1
	for _, s := range []int64{0, 3, 4, 5, 200, 2047, 2048, 2049, 4096 + 100, 10000, last} {
		sec := bytes.Repeat([]byte{byte(s), 0xc3}, SectorSize/2)
		d.sectors[s] = sec
		copy(want[s*SectorSize:], sec)
	}
	for s := int64(3 * 4096); s < 4*4096; s++ { // block 3 written whole
		sec := bytes.Repeat([]byte{0x3c}, SectorSize)
		d.sectors[s] = sec
		copy(want[s*SectorSize:], sec)
	}
	child := filepath.Join(tmp, "child.vhd")
	if err := os.WriteFile(child, d.build(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(child+".want", want, 0o644); err != nil {
		t.Fatal(err)
	}
	// qemu 7.2 reads a differencing disk as a dynamic one (no parent, no
	// bitmaps): it still confirms that the child's sectors are where our
	// writer says.
	if err := testimages.VDiskOracle(child, "vpc"); err != nil {
		t.Fatal(err)
	}
	qemuView, err := os.ReadFile(child + ".raw")
	if err != nil {
		t.Fatal(err)
	}
	for s, data := range d.sectors {
		if !bytes.Equal(qemuView[s*SectorSize:(s+1)*SectorSize], data) {
			t.Fatalf("qemu-img reads child sector %d differently from the crafted data", s)
		}
	}
	// libvhdi, an independent reader that follows the parent, must see
	// what we expect, except in the sectors of allocated blocks whose
	// bitmap bit is clear: libvhdi 20210425 reads them from the child,
	// where the VHD spec ("Block Bitmap") sends them to the parent.
	testimages.RequireTools(t, "vhdimount")
	testimages.RequireRoot(t)
	if err := testimages.VhdiOracle(child, child+".vhdi"); err != nil {
		t.Fatal(err)
	}
	vhdi, _ := os.ReadFile(child + ".vhdi")
	if len(vhdi) != len(want) {
		t.Fatalf("libvhdi reads %d bytes, want %d", len(vhdi), len(want))
	}
	perBlock := int64(d.blockSize) / SectorSize
	allocated := map[int64]bool{}
	for s := range d.sectors {
		allocated[s/perBlock] = true
	}
	for s := int64(0); s < int64(len(want))/SectorSize; s++ {
		if _, set := d.sectors[s]; allocated[s/perBlock] && !set {
			continue
		}
		if !bytes.Equal(vhdi[s*SectorSize:(s+1)*SectorSize], want[s*SectorSize:(s+1)*SectorSize]) {
			t.Fatalf("libvhdi reads sector %d differently", s)
		}
	}
	img := mustOpen(t, child)
	testimages.CheckVDiskRead(t, img, child+".want")
	info := img.Info()
	if info.Subformat != "differencing" || info.BackingFilename != "parent.vhd" || info.Backing == nil || len(info.Warnings) != 0 {
		t.Errorf("info %+v", info)
	}
	ext, err := img.Extents(0, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Sector 0 from the child, sector 1-2 from the parent's data.
	if ext[0] != (vdisk.Extent{Off: 0, Len: 512, Kind: vdisk.Data, Layer: 0}) ||
		ext[1] != (vdisk.Extent{Off: 512, Len: 1024, Kind: vdisk.Data, Layer: 1}) {
		t.Errorf("extents start %+v", ext[:3])
	}

	// Alone, the child reads zeros where the parent would show.
	f, _ := vdisk.OpenOSFile(child)
	alone, err := Open(f, vdisk.OpenOptions{Name: child, NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	buf := make([]byte, 2048)
	alone.ReadAt(buf, 0)
	if !bytes.Equal(buf[:512], d.sectors[0]) || !bytes.Equal(buf[512:1536], make([]byte, 1024)) {
		t.Errorf("NoBacking read wrong")
	}

	// A missing parent is ErrBackingMissing, naming what was tried.
	os.Remove(filepath.Join(tmp, "parent.vhd"))
	if _, err := openChain(t, child); !errors.Is(err, vdisk.ErrBackingMissing) {
		t.Errorf("missing parent: %v", err)
	}
}
