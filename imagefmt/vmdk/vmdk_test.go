package vmdk

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
	{Name: "sparse.vmdk", Format: "vmdk", Options: "subformat=monolithicSparse"},
	{Name: "stream.vmdk", Format: "vmdk", Options: "subformat=streamOptimized"},
	{Name: "flat.vmdk", Format: "vmdk", Options: "subformat=monolithicFlat"},
	{Name: "split-sparse.vmdk", Format: "vmdk", Options: "subformat=twoGbMaxExtentSparse"},
	{Name: "split-flat.vmdk", Format: "vmdk", Options: "subformat=twoGbMaxExtentFlat"},
	{Name: "zeroed.vmdk", Format: "vmdk", Build: func(dir, src, dst string) error {
		// Zeroed-grain entries (GTE 1) over data and over a hole.
		if _, err := testimages.Run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "zeroed_grain=on", src, dst); err != nil {
			return err
		}
		_, err := testimages.Run("qemu-io", "-f", "vmdk", "-c", "write -z 0 128k", "-c", "write -z 2M 64k", "-c", "write -z 5M 64k", dst)
		return err
	}},
	{Name: "delta.vmdk", Format: "vmdk", Build: func(dir, src, dst string) error {
		// A delta link over sparse.vmdk (built before it).
		if _, err := testimages.RunIn(dir, nil, "qemu-img", "create", "-f", "vmdk", "-b", "sparse.vmdk", "-F", "vmdk", filepath.Base(dst)); err != nil {
			return err
		}
		_, err := testimages.Run("qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 1040k 100k", "-c", "write -P 0x33 7M 512", dst)
		return err
	}},
}

func fixtures(t testing.TB) string {
	return testimages.VDiskImages(t, "vmdk", "v1", qemuVariants)
}

// openChain opens path, its extents and parents with this package only.
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
		img, err := Open(f, vdisk.OpenOptions{Name: name,
			OpenFile: func(n string) (vdisk.File, error) { return vdisk.OpenOSFile(n) },
			OpenBacking: func(n, format string) (vdisk.Image, error) {
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
			if info.Format != "vmdk" || info.VirtualSize != img.Size() || info.Subformat == "" {
				t.Errorf("info %+v", info)
			}
			if len(info.Warnings) > 0 {
				t.Errorf("warnings on a clean image: %q", info.Warnings)
			}
		})
	}
}

func TestQemuInfo(t *testing.T) {
	dir := fixtures(t)
	for name, want := range map[string]string{"sparse.vmdk": "monolithicSparse", "stream.vmdk": "streamOptimized",
		"flat.vmdk": "monolithicFlat", "split-flat.vmdk": "twoGbMaxExtentFlat"} {
		info := mustOpen(t, filepath.Join(dir, name)).Info()
		if info.Subformat != want {
			t.Errorf("%s: subformat %q, want %q", name, info.Subformat, want)
		}
		if (name == "flat.vmdk" || name == "split-flat.vmdk") != (len(info.ExtraFiles) == 1) {
			t.Errorf("%s: extra files %q", name, info.ExtraFiles)
		}
	}
	info := mustOpen(t, filepath.Join(dir, "delta.vmdk")).Info()
	if info.BackingFilename != "sparse.vmdk" || info.Backing == nil || info.ParentUUID != info.Backing.UUID {
		t.Errorf("delta info %+v", info)
	}
	ext, err := mustOpen(t, filepath.Join(dir, "delta.vmdk")).Extents(0, 1<<20+256<<10)
	if err != nil {
		t.Fatal(err)
	}
	// The parent's data at 0, its hole, then the delta's two grains
	// (written at 1040k, copied up whole), then the parent's data again.
	want := []vdisk.Extent{
		{Off: 0, Len: 128 << 10, Kind: vdisk.Data, Layer: 1},
		{Off: 128 << 10, Len: 896 << 10, Kind: vdisk.Unallocated, Layer: -1},
		{Off: 1 << 20, Len: 128 << 10, Kind: vdisk.Data, Layer: 0},
		{Off: 1<<20 + 128<<10, Len: 128 << 10, Kind: vdisk.Data, Layer: 1},
	}
	if fmt.Sprint(ext) != fmt.Sprint(want) {
		t.Errorf("delta extents\n got %+v\nwant %+v", ext, want)
	}
}

// TestCrafted covers layouts qemu-img does not write but reads: a
// stream-optimized file with its grain directory at the end (VMware and OVA
// exports), a vmfsSparse descriptor with a COWD extent, and a descriptor
// with several FLAT, VMFS and SPARSE extents at offsets.
func TestCrafted(t *testing.T) {
	dir := fixtures(t)
	src, err := os.ReadFile(filepath.Join(dir, "source.raw"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	desc := func(createType, extents string) []byte {
		return []byte(fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=%q\n\n# Extent description\n%s\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\n", createType, extents))
	}
	cases := map[string]func() string{
		"stream-gd-at-end": func() string {
			return write("export.vmdk", buildStream(src, 128, string(desc("streamOptimized", fmt.Sprintf("RW %d SPARSE \"export.vmdk\"\n", len(src)/512)))))
		},
		"cowd": func() string {
			write("esx-delta.vmdk", buildCOWD(src, 1))
			return write("esx.vmdk", desc("vmfsSparse", fmt.Sprintf("RW %d VMFSSPARSE \"esx-delta.vmdk\"\n", len(src)/512)))
		},
		"two-sparse-extents": func() string {
			// Two hosted sparse extents made by qemu-img from the halves.
			half := 6 << 20
			for i, part := range [][]byte{src[:half], src[half:]} {
				raw := write(fmt.Sprintf("half%d.raw", i), part)
				out := filepath.Join(tmp, fmt.Sprintf("half%d.vmdk", i))
				if _, err := testimages.Run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, out); err != nil {
					t.Fatal(err)
				}
			}
			return write("two.vmdk", desc("twoGbMaxExtentSparse", fmt.Sprintf("RW %d SPARSE \"half0.vmdk\"\nRW %d SPARSE \"half1.vmdk\"\n",
				half/512, (len(src)-half)/512)))
		},
		"multi-extent": func() string {
			write("data.bin", src)
			write("part-s001.vmdk", buildCOWD(src[:3<<20], 128))
			return write("multi.vmdk", desc("monolithicFlat", fmt.Sprintf(
				"RW 2048 FLAT \"data.bin\" 8192\nRW 4096 VMFS \"data.bin\"\nRW %d SPARSE \"part-s001.vmdk\"\nRW 100 FLAT \"data.bin\" %d\n",
				3<<20/512, len(src)/512-100)))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			path := build()
			if err := testimages.VDiskOracle(path, "vmdk"); err != nil {
				t.Fatal(err)
			}
			img := mustOpen(t, path)
			testimages.CheckVDiskRead(t, img, path+".raw")
			testimages.CheckVDiskDataMap(t, dataExtents(t, img), path+".map.json")
		})
	}
}

// TestZeroExtent: qemu skips ZERO and RDONLY extents, so the expected bytes are built
// from the pieces.
func TestZeroExtent(t *testing.T) {
	dir := fixtures(t)
	src, err := os.ReadFile(filepath.Join(dir, "source.raw"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "data.bin"), src, 0o644)
	d := "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n" +
		"RW 2048 FLAT \"data.bin\" 0\nRW 1000 ZERO\nRDONLY 2048 FLAT \"data.bin\" 0\n"
	path := filepath.Join(tmp, "z.vmdk")
	os.WriteFile(path, []byte(d), 0o644)
	want := append(append(bytes.Clone(src[:1<<20]), make([]byte, 1000*512)...), src[:1<<20]...)
	os.WriteFile(path+".want", want, 0o644)
	img := mustOpen(t, path)
	testimages.CheckVDiskRead(t, img, path+".want")
	ext, _ := img.Extents(0, img.Size())
	if len(ext) != 3 || ext[1].Kind != vdisk.Zero || ext[1].Off != 1<<20 || ext[1].Len != 1000*512 {
		t.Errorf("extents %+v", ext)
	}
}
