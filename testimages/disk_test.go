package testimages

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDisks builds every disk fixture and checks each volume with blkid
// at its offset and, for filesystems, that the bytes there are those of
// the filesystem image whose oracle it names.
func TestDisks(t *testing.T) {
	skipShort(t)
	for _, name := range DiskVariants {
		t.Run(name, func(t *testing.T) {
			d := GetDisk(t, name)
			if len(d.Volumes) == 0 {
				t.Fatal("no volumes")
			}
			for _, v := range d.Volumes {
				part := filepath.Join(t.TempDir(), "part")
				if err := Truncate(part, v.Size); err != nil {
					t.Fatal(err)
				}
				if v.Segments != nil {
					if err := assembleLV(part, d, v.Segments); err != nil {
						t.Fatal(err)
					}
				} else if err := copyRange(part, d.Images[v.Disk], v.Offset, v.Size); err != nil {
					t.Fatal(err)
				}
				fs, label, uuid, err := Blkid(part)
				if err != nil {
					t.Fatal(err)
				}
				if fs != v.FS || label != v.Label || uuid != v.UUID {
					t.Errorf("%s: blkid at offset %d: %s %q %s, want %s %q %s", v.Name, v.Offset, fs, label, uuid, v.FS, v.Label, v.UUID)
				}
				if v.FS != "unknown" && v.FS != "swap" && v.FS != "LVM2_member" && v.OracleFile == "" {
					t.Errorf("%s: %s without an oracle", v.Name, v.FS)
				}
				if v.Segments != nil && v.OracleFile != "" {
					checkContent(t, part, &v)
				}
			}
			head := make([]byte, 8192+8)
			f, err := os.Open(d.Images[0])
			if err != nil {
				t.Fatal(err)
			}
			f.ReadAt(head, 0)
			f.Close()
			if d.Scheme == "gpt" {
				hdr := string(head[d.SectorSize : d.SectorSize+8])
				if d.PrimaryGPTDamaged != (hdr != "EFI PART") {
					t.Errorf("primary GPT header at %d: %q (damaged %v)", d.SectorSize, hdr, d.PrimaryGPTDamaged)
				}
				mbrTypes := 0
				for i := range 4 {
					if head[446+16*i+4] != 0 {
						mbrTypes++
					}
				}
				if d.Hybrid != (mbrTypes > 1) {
					t.Errorf("MBR lists %d partitions (hybrid %v)", mbrTypes, d.Hybrid)
				}
			}
		})
	}
}

// copyRange copies [off, off+n) of src to the start of dst.
func copyRange(dst, src string, off, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for p := int64(0); p < n; p += int64(len(buf)) {
		k, err := in.ReadAt(buf[:min(int64(len(buf)), n-p)], off+p)
		if _, werr := out.WriteAt(buf[:k], p); werr != nil {
			out.Close()
			return werr
		}
		if err != nil {
			break
		}
	}
	return out.Close()
}

// assembleLV copies an LV's content, extent by extent (stripe unit by
// stripe unit), from the disks into dst, following the first leg of
// raid1 and mirror segments.
func assembleLV(dst string, d *DiskImage, segs []LVSegment) error {
	for _, s := range segs {
		for le := int64(0); le < s.Extents*lvmExtentSize; {
			switch s.Type {
			case "raid1", "mirror":
				leg := filepath.Join(filepath.Dir(dst), "leg")
				if err := Truncate(leg, s.Extents*lvmExtentSize); err != nil {
					return err
				}
				if err := assembleLV(leg, d, d.SubLVs[s.Areas[0].LV]); err != nil {
					return err
				}
				return copyRangeTo(dst, s.Start*lvmExtentSize, leg, 0, s.Extents*lvmExtentSize)
			}
			unit := int64(lvmExtentSize)
			if len(s.Areas) > 1 {
				unit = s.StripeSize
			}
			n := int64(len(s.Areas))
			k := le / unit
			a := s.Areas[k%n]
			if err := copyRangeTo(dst, s.Start*lvmExtentSize+le, d.Images[a.Disk], a.Offset+(k/n)*unit, unit); err != nil {
				return err
			}
			le += unit
		}
	}
	return nil
}

func copyRangeTo(dst string, dstOff int64, src string, off, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, n)
	k, _ := in.ReadAt(buf, off)
	_, err = out.WriteAt(buf[:k], dstOff)
	return errors.Join(err, out.Close())
}

// checkContent reads a volume's filesystem with the oracle's reader and
// compares names, types, sizes and content with its oracle.
func checkContent(t *testing.T, part string, v *Volume) {
	t.Helper()
	want, err := ReadJSON(v.OracleFile)
	if err != nil {
		t.Fatal(err)
	}
	var got *Manifest
	switch v.Compare {
	case "ext":
		mnt, cleanup, err := LoopMount(part, 0, 0, false, "", "ro")
		if err != nil {
			t.Fatal(err)
		}
		got, err = ScanDir(mnt)
		cleanup()
	case "ntfs":
		mnt := t.TempDir()
		umount, err := FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach,streams_interface=xattr", part, mnt)
		if err != nil {
			t.Fatal(err)
		}
		got, err = ScanDir(mnt)
		umount()
	case "fat":
		out := t.TempDir()
		if err = mtools(part, "mcopy", "-s", "-m", "-n", "-Q", "::/", out); err == nil {
			got, err = ScanDir(out)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	o := CompareOptions{Fields: FieldType | FieldSize | FieldContent, MaxDiffs: 10}
	if v.Compare == "ntfs" {
		// Absolute link targets hold the mount point, whose length differs.
		o.IgnorePaths = []string{"x/win/junction", "x/win/junction-other-drive", "x/win/symlink-absolute"}
	}
	for _, d := range Compare(want, got, o) {
		t.Errorf("%s: %s", v.Name, d)
	}
}
