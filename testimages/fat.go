package testimages

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// FATVariant is one FAT fixture: mkfs.vfat, then mtools (an independent
// writer) copies in a RichTree with the FAT profile (long names, empty
// files, a deep tree, the big directory), an EFI system partition layout
// (EFI/BOOT/BOOTX64.EFI), and a file and a directory that are deleted
// again with mdel/mdeltree, leaving deleted entries behind. The oracle is
// the source tree's manifest (names, types, sizes, content, file mtimes
// at FAT's 2 s; compare with FATCompare): this kernel has no vfat.
type FATVariant struct {
	Name    string `json:"name"`
	Bits    int    `json:"bits"` // mkfs.vfat -F
	SizeMiB int64  `json:"size_mib"`
	// SectorsPerCluster is mkfs.vfat -s.
	SectorsPerCluster int `json:"sectors_per_cluster"`
	// BigDir and LargeSize override the tree's (FAT12 volumes are small).
	BigDir    int   `json:"big_dir,omitempty"`
	LargeSize int64 `json:"large_size,omitempty"`
}

// FATVariants are the FAT fixtures. mcopy takes time quadratic in the
// size of a directory, so big/ is smaller than elsewhere.
var FATVariants = []FATVariant{
	{Name: "fat12", Bits: 12, SizeMiB: 16, SectorsPerCluster: 16, BigDir: 200, LargeSize: 1 << 20},
	{Name: "fat16", Bits: 16, SizeMiB: 96, SectorsPerCluster: 4, BigDir: 1000},
	{Name: "fat32", Bits: 32, SizeMiB: 96, SectorsPerCluster: 1, BigDir: 2500},
}

const fatVersion = "f1"

// FATImage is a built FAT fixture.
type FATImage struct {
	Variant    FATVariant `json:"variant"`
	Image      string     `json:"image"`
	OracleFile string     `json:"oracle"`
	Label      string     `json:"label"`
	// VolumeID is the serial number as blkid shows it ("ABCD-1234").
	VolumeID string `json:"volume_id"`
	// Deleted are the paths whose directory entries were deleted.
	Deleted []string `json:"deleted"`
}

// Oracle loads the oracle manifest.
func (x *FATImage) Oracle() (*Manifest, error) { return ReadJSON(x.OracleFile) }

// FATTools are the programs BuildFAT needs.
var FATTools = []string{"mkfs.vfat", "mcopy", "mmd", "mdel", "mdeltree"}

// GetFAT builds (or finds cached) the fixture of v for a test.
func GetFAT(t testing.TB, v FATVariant) *FATImage {
	t.Helper()
	RequireTools(t, FATTools...)
	x, err := BuildFAT(v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// BuildFAT builds the fixture of v, or returns the cached one.
func BuildFAT(v FATVariant) (*FATImage, error) {
	key, _ := json.Marshal(v)
	sum := sha256.Sum256(key)
	dir, err := Cached("fat-"+v.Name, fmt.Sprintf("%s-%s-%x", fatVersion, treeVersion, sum[:4]), func(dir string) error {
		return buildFAT(dir, v)
	})
	if err != nil {
		return nil, err
	}
	x := new(FATImage)
	if err := readInfo(dir, x); err != nil {
		return nil, err
	}
	x.Image = filepath.Join(dir, x.Image)
	x.OracleFile = filepath.Join(dir, x.OracleFile)
	return x, nil
}

// mtools runs an mtools command on img in UTC (FAT times are local) with
// UTF-8 names.
func mtools(img, cmd string, args ...string) error {
	_, err := RunIn("", []string{"TZ=UTC", "LC_ALL=C.UTF-8", "MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0"},
		cmd, append([]string{"-i", img}, args...)...)
	return err
}

func buildFAT(dir string, v FATVariant) error {
	o := FATTree()
	if v.BigDir != 0 {
		o.BigDir = v.BigDir
	}
	if v.LargeSize != 0 {
		o.LargeSize = v.LargeSize
	}
	src, m, err := SourceTree("richtree-fat-"+v.Name, o)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(v.Name))
	x := &FATImage{Variant: v, Image: "fs.img", OracleFile: "oracle.json", Label: strings.ToUpper(v.Name),
		VolumeID: fmt.Sprintf("%02X%02X-%02X%02X", sum[0], sum[1], sum[2], sum[3])}
	img := filepath.Join(dir, x.Image)
	if err := Truncate(img, v.SizeMiB<<20); err != nil {
		return err
	}
	if _, err := Run("mkfs.vfat", "-F", fmt.Sprint(v.Bits), "-s", fmt.Sprint(v.SectorsPerCluster),
		"-n", x.Label, "-i", strings.ReplaceAll(x.VolumeID, "-", ""), img); err != nil {
		return err
	}
	// The EFI system partition layout, staged with FAT-exact times.
	stage := filepath.Join(dir, "stage")
	efi := map[string]int{"EFI/BOOT/BOOTX64.EFI": 70 << 10, "EFI/debian/grubx64.efi": 30 << 10, "EFI/debian/grub.cfg": 100}
	for rel, n := range efi {
		p := filepath.Join(stage, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*31 + len(rel))
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		t := time.Date(2023, 5, 6, 7, 8, 10, 0, time.UTC)
		if err := os.Chtimes(p, t, t); err != nil {
			return err
		}
	}
	extra, err := ScanDir(stage)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	args := []string{"-s", "-m", "-Q"}
	for _, e := range ents {
		args = append(args, filepath.Join(src, e.Name()))
	}
	args = append(args, filepath.Join(stage, "EFI"), "::/")
	if err := mtools(img, "mcopy", args...); err != nil {
		return err
	}
	// Deleted entries: a file in the root, a directory with files, a file
	// among others in files/.
	if err := mtools(img, "mcopy", "-Q", filepath.Join(src, "files", "text.txt"), "::/deleted file.txt"); err != nil {
		return err
	}
	if err := mtools(img, "mmd", "::/deleted dir"); err != nil {
		return err
	}
	for _, n := range []string{"a", "b.txt", "c with long name"} {
		if err := mtools(img, "mcopy", "-Q", filepath.Join(src, "files", "size-100.bin"), "::/deleted dir/"+n); err != nil {
			return err
		}
	}
	if err := mtools(img, "mcopy", "-Q", filepath.Join(src, "files", "size-1.bin"), "::/files/deleted.bin"); err != nil {
		return err
	}
	for _, c := range [][]string{{"mdel", "::/deleted file.txt"}, {"mdeltree", "::/deleted dir"}, {"mdel", "::/files/deleted.bin"}} {
		if err := mtools(img, c[0], c[1]); err != nil {
			return err
		}
	}
	x.Deleted = []string{"deleted file.txt", "deleted dir", "files/deleted.bin"}
	for _, e := range extra.Entries {
		if e.Path != "." {
			m.Entries = append(m.Entries, e)
		}
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	m.Source = fmt.Sprintf("source tree of %s (RichTree FAT profile + EFI/), copied in by mcopy", v.Name)
	if err := m.WriteJSON(filepath.Join(dir, x.OracleFile)); err != nil {
		return err
	}
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	return writeInfo(dir, x)
}
