package testimages

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// NTFSVariant is one NTFS fixture: mkntfs on a file, populated through an
// ntfs-3g mount with RichTree (NTFS profile) and NTFS extras (compressed
// files, a fragmented file, big and small alternate data streams, Windows
// symlinks and junctions, Interix special files, attribute flags). The
// oracle is ScanDir of a read-only ntfs-3g mount with
// streams_interface=xattr, plus system.ntfs_attrib_be, with times taken
// from system.ntfs_times (the raw 100 ns values: ntfs-3g 2022.10 rounds
// fractional pre-1970 times wrongly in stat) including the creation time
// as Btime.
type NTFSVariant struct {
	Name        string `json:"name"`
	SectorSize  int    `json:"sector_size"`  // mkntfs -s
	ClusterSize int    `json:"cluster_size"` // mkntfs -c
	SizeMiB     int64  `json:"size_mib"`
	// BigDir overrides the size of big/ (default 5000).
	BigDir int `json:"big_dir,omitempty"`
}

// NTFSVariants are the NTFS fixtures. NTFS compression needs clusters of
// at most 4 KiB, so the 64 KiB-cluster variant has no compressed files.
var NTFSVariants = []NTFSVariant{
	{Name: "ntfs", SectorSize: 512, ClusterSize: 4096, SizeMiB: 160},
	{Name: "ntfs-c512", SectorSize: 512, ClusterSize: 512, SizeMiB: 160, BigDir: 1500},
	{Name: "ntfs-s4096-c64k", SectorSize: 4096, ClusterSize: 65536, SizeMiB: 512, BigDir: 1500},
}

const ntfsVersion = "n1"

// NTFSImage is a built NTFS fixture.
type NTFSImage struct {
	Variant    NTFSVariant `json:"variant"`
	Image      string      `json:"image"`
	OracleFile string      `json:"oracle"`
	Label      string      `json:"label"`
	// MountPoint is where ntfs-3g had the volume when the oracle was
	// taken: it is part of the targets ntfs-3g gives absolute symlinks
	// and junctions ("<MountPoint>/x/win/Target Dir").
	MountPoint string `json:"mount_point"`
	// Compressed says whether x/compressed/ holds compressed files.
	Compressed bool `json:"compressed"`
}

// Oracle loads the oracle manifest.
func (x *NTFSImage) Oracle() (*Manifest, error) { return ReadJSON(x.OracleFile) }

// NTFSTools are the programs BuildNTFS needs.
var NTFSTools = []string{"mkntfs", "ntfs-3g"}

// NTFS xattr names of ntfs-3g (ntfs-3g's README of extended attributes).
const (
	XattrNTFSAttrib  = "system.ntfs_attrib_be"    // file attribute flags, 4 bytes big endian
	XattrNTFSReparse = "system.ntfs_reparse_data" // raw reparse point
	xattrNTFSTimes   = "system.ntfs_times"        // creation, write, access, MFT change: 4 x le64
)

// GetNTFS builds (or finds cached) the fixture of v for a test.
func GetNTFS(t testing.TB, v NTFSVariant) *NTFSImage {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, NTFSTools...)
	x, err := BuildNTFS(v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// BuildNTFS builds the fixture of v, or returns the cached one.
func BuildNTFS(v NTFSVariant) (*NTFSImage, error) {
	key, _ := json.Marshal(v)
	sum := sha256.Sum256(key)
	dir, err := Cached("ntfs-"+v.Name, fmt.Sprintf("%s-%s-%x", ntfsVersion, treeVersion, sum[:4]), func(dir string) error {
		return buildNTFS(dir, v)
	})
	if err != nil {
		return nil, err
	}
	x := new(NTFSImage)
	if err := readInfo(dir, x); err != nil {
		return nil, err
	}
	x.Image = filepath.Join(dir, x.Image)
	x.OracleFile = filepath.Join(dir, x.OracleFile)
	return x, nil
}

func readInfo(dir string, x any) error {
	data, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, x)
}

func writeInfo(dir string, x any) error {
	data, err := json.MarshalIndent(x, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "info.json"), append(data, '\n'), 0o644)
}

func buildNTFS(dir string, v NTFSVariant) error {
	img := filepath.Join(dir, "fs.img")
	x := &NTFSImage{Variant: v, Image: "fs.img", OracleFile: "oracle.json", Label: v.Name,
		Compressed: v.ClusterSize <= 4096}
	if err := Truncate(img, v.SizeMiB<<20); err != nil {
		return err
	}
	if _, err := Run("mkntfs", "-F", "-Q", "-q", "-L", x.Label, "-s", fmt.Sprint(v.SectorSize),
		"-c", fmt.Sprint(v.ClusterSize), img); err != nil {
		return err
	}
	mnt := filepath.Join(dir, "mnt")
	x.MountPoint = mnt
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}
	defer os.Remove(mnt)
	umount, err := FuseMount(mnt, "ntfs-3g", "-o", "no_detach,streams_interface=xattr", img, mnt)
	if err != nil {
		return err
	}
	o := NTFSTree()
	o.NoPrealloc = true // ntfs-3g has no fallocate
	if v.BigDir != 0 {
		o.BigDir = v.BigDir
	}
	err = RichTree(mnt, o)
	if err == nil {
		err = ntfsExtras(mnt, x.Compressed)
	}
	if err = errors.Join(err, umount()); err != nil {
		return fmt.Errorf("%s: %w", v.Name, err)
	}
	umount, err = FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach,streams_interface=xattr", img, mnt)
	if err != nil {
		return err
	}
	m, err := ScanDirWith(mnt, ScanOptions{ExtraXattrs: []string{XattrNTFSAttrib, xattrNTFSTimes}})
	if err = errors.Join(err, umount()); err != nil {
		return err
	}
	if err := ntfsRawTimes(m); err != nil {
		return fmt.Errorf("%s oracle: %w", v.Name, err)
	}
	m.Source = fmt.Sprintf("ntfs-3g read-only mount of %s (mkntfs -s %d -c %d)", v.Name, v.SectorSize, v.ClusterSize)
	if err := m.WriteJSON(filepath.Join(dir, x.OracleFile)); err != nil {
		return err
	}
	return writeInfo(dir, x)
}

// ntfsRawTimes replaces each entry's times by the raw ones of
// system.ntfs_times (creation, last write, last access, MFT change) and
// drops that attribute, which is ntfs-3g's interface and not the
// volume's. Each must agree with stat to a second.
func ntfsRawTimes(m *Manifest) error {
	for i := range m.Entries {
		e := &m.Entries[i]
		raw, ok := e.Xattrs[xattrNTFSTimes]
		if !ok {
			return fmt.Errorf("%s: no %s", e.Path, xattrNTFSTimes)
		}
		delete(e.Xattrs, xattrNTFSTimes)
		if len(e.Xattrs) == 0 {
			e.Xattrs = nil
		}
		b, err := decodeXattrValue(raw)
		if err != nil || len(b) != 32 {
			return fmt.Errorf("%s: %s = %q", e.Path, xattrNTFSTimes, raw)
		}
		var ts [4]time.Time
		for j := range ts {
			ts[j] = NTFSTime(binary.LittleEndian.Uint64(b[8*j:]))
		}
		for _, c := range []struct {
			dst *time.Time
			src time.Time
		}{{&e.Mtime, ts[1]}, {&e.Atime, ts[2]}, {&e.Ctime, ts[3]}} {
			if d := c.dst.Unix() - c.src.Unix(); d > 1 || d < -1 {
				return fmt.Errorf("%s: stat time %v, raw %v", e.Path, *c.dst, c.src)
			}
			*c.dst = c.src
		}
		e.Btime = ts[0]
	}
	return nil
}

// NTFSTime converts an NTFS time (100 ns units since 1601-01-01 UTC) to
// a time.Time, without overflowing past 2262.
func NTFSTime(t uint64) time.Time {
	const epochDiff = 116444736000000000 // 1601 to 1970 in 100 ns
	d := int64(t) - epochDiff
	sec, rem := d/1e7, d%1e7
	if rem < 0 {
		sec, rem = sec-1, rem+1e7
	}
	return time.Unix(sec, rem*100).UTC()
}

// decodeXattrValue inverts XattrValue for values it stored whole.
func decodeXattrValue(s string) ([]byte, error) {
	switch {
	case len(s) >= 5 && s[:5] == "text:":
		return []byte(s[5:]), nil
	case len(s) >= 4 && s[:4] == "hex:":
		return hex.DecodeString(s[4:])
	}
	return nil, fmt.Errorf("xattr value %.20q not stored whole", s)
}
