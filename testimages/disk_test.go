package testimages

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDisks builds every disk fixture and checks each volume with blkid
// at its offset and, for filesystems, that the bytes there are those of
// the filesystem image whose oracle it names.
func TestDisks(t *testing.T) {
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
				if err := copyRange(part, d.Images[v.Disk], v.Offset, v.Size); err != nil {
					t.Fatal(err)
				}
				fs, label, uuid, err := Blkid(part)
				if err != nil {
					t.Fatal(err)
				}
				if fs != v.FS || label != v.Label || uuid != v.UUID {
					t.Errorf("%s: blkid at offset %d: %s %q %s, want %s %q %s", v.Name, v.Offset, fs, label, uuid, v.FS, v.Label, v.UUID)
				}
				if v.FS != "unknown" && v.FS != "swap" && v.OracleFile == "" {
					t.Errorf("%s: %s without an oracle", v.Name, v.FS)
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
