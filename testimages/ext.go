package testimages

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// ExtVariant is one ext2/3/4 fixture: a RichTree copied in by mkfs -d
// (directories then indexed by e2fsck -D), completed through a read-write
// mount (a kernel-written rw/ subtree with htree directories, unwritten
// extents, nanosecond and post-2038 times; the source times re-applied with
// nanoseconds, which mkfs -d drops), checked by e2fsck, and scanned
// through a read-only mount by the independent reader named by Oracle.
type ExtVariant struct {
	Name string `json:"name"`
	// Mkfs is mkfs.ext2, mkfs.ext3 or mkfs.ext4; Args are its options.
	Mkfs string   `json:"mkfs"`
	Args []string `json:"args"`
	// SizeMiB is the image size.
	SizeMiB int64 `json:"size_mib"`
	// Oracle is "kernel" (a loop mount) or "fuse2fs" for what this kernel
	// cannot mount (64 KiB blocks, casefold without CONFIG_UNICODE).
	// fuse2fs reports no birth times.
	Oracle string `json:"oracle"`
	// Features must all be in the superblock's feature list.
	Features []string `json:"features"`
	// NoFallocate: the filesystem has no extents, so no unwritten ones.
	NoFallocate bool `json:"no_fallocate,omitempty"`
	// Casefold adds cf/, a casefolded directory of mixed-case names.
	Casefold bool `json:"casefold,omitempty"`
	// LargeXattr adds rw/xattr/huge with a 40,000-byte value (an EA inode).
	LargeXattr bool `json:"large_xattr,omitempty"`
	// Journal leaves the image as a crash would: journal-only/ is written
	// and committed to the journal but not checkpointed, and an open,
	// unlinked file sits on the orphan list. The oracle is the kernel's
	// view after recovery (of a copy).
	Journal bool `json:"journal,omitempty"`
	// Big uses the big source tree: a 70 MiB file (triple-indirect blocks
	// at 1 KiB) and a 30,000-entry directory.
	Big bool `json:"big,omitempty"`
}

// ExtVariants are the ext fixtures every ext reader test iterates.
var ExtVariants = []ExtVariant{
	{Name: "ext2-1k", Mkfs: "mkfs.ext2", Args: []string{"-b", "1024", "-I", "128"}, SizeMiB: 128,
		Features: []string{"ext_attr", "dir_index", "filetype"}, NoFallocate: true},
	{Name: "ext3", Mkfs: "mkfs.ext3", Args: []string{"-b", "4096", "-I", "256"}, SizeMiB: 96,
		Features: []string{"has_journal", "dir_index"}, NoFallocate: true},
	{Name: "ext4", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096"}, SizeMiB: 96,
		Features: []string{"has_journal", "extent", "flex_bg", "64bit", "metadata_csum", "huge_file"}},
	{Name: "ext4-noextent", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "^extent,^flex_bg,^64bit"}, SizeMiB: 96,
		Features: []string{"has_journal"}, NoFallocate: true},
	{Name: "ext4-1k-csum", Mkfs: "mkfs.ext4", Args: []string{"-b", "1024", "-O", "64bit,metadata_csum,metadata_csum_seed"}, SizeMiB: 128,
		Features: []string{"64bit", "metadata_csum", "metadata_csum_seed", "extent"}},
	{Name: "ext4-inline", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "inline_data"}, SizeMiB: 96,
		Features: []string{"inline_data"}},
	{Name: "ext4-metabg", Mkfs: "mkfs.ext4", Args: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}, SizeMiB: 128,
		Features: []string{"meta_bg"}},
	{Name: "ext4-largedir", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "large_dir"}, SizeMiB: 96,
		Features: []string{"large_dir"}},
	{Name: "ext4-eainode", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "ea_inode"}, SizeMiB: 96,
		Features: []string{"ea_inode"}, LargeXattr: true},
	{Name: "ext4-bigalloc", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "bigalloc", "-C", "16384"}, SizeMiB: 160,
		Features: []string{"bigalloc"}},
	{Name: "ext4-journal", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "orphan_file"}, SizeMiB: 96,
		Features: []string{"orphan_file", "needs_recovery"}, Journal: true},
	{Name: "ext4-64k", Mkfs: "mkfs.ext4", Args: []string{"-b", "65536"}, SizeMiB: 1024, Oracle: "fuse2fs"},
	{Name: "ext4-casefold", Mkfs: "mkfs.ext4", Args: []string{"-b", "4096", "-O", "casefold", "-E", "encoding=utf8"}, SizeMiB: 96,
		Features: []string{"casefold"}, Oracle: "fuse2fs", Casefold: true},
}

// ExtBigVariant is an ext2 with 1 KiB blocks holding the big tree: a file
// that needs triple-indirect blocks and a 30,000-entry directory. Tests
// use it behind an option (VMMOUNT_BIG_FIXTURES=1).
var ExtBigVariant = ExtVariant{Name: "ext2-1k-big", Mkfs: "mkfs.ext2", Args: []string{"-b", "1024"}, SizeMiB: 512,
	Features: []string{"dir_index"}, NoFallocate: true, Big: true}

// extVersion is bumped when the ext recipe changes.
const extVersion = "e3"

// ExtImage is a built ext fixture.
type ExtImage struct {
	Variant ExtVariant `json:"variant"`
	// Image is the raw filesystem image; OracleFile its manifest.
	Image      string `json:"image"`
	OracleFile string `json:"oracle"`
	UUID       string `json:"uuid"`
	Label      string `json:"label"`
	BlockSize  int    `json:"block_size"`
	// Features is the superblock's feature list (dumpe2fs -h).
	Features []string `json:"features"`
	// JournalOnly lists paths that only the journal holds (Journal
	// variant): a reader that does not replay it misses them.
	JournalOnly []string `json:"journal_only,omitempty"`
}

// Oracle loads the oracle manifest.
func (x *ExtImage) Oracle() (*Manifest, error) { return ReadJSON(x.OracleFile) }

// ExtTools are the programs BuildExt needs.
var ExtTools = []string{"mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs", "losetup", "mount", "fuse2fs"}

// GetExt builds (or finds cached) the fixture of v for a test, failing
// or skipping it when tools or root are missing.
func GetExt(t testing.TB, v ExtVariant) *ExtImage {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, ExtTools...)
	x, err := BuildExt(v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// BuildExt builds the fixture of v, or returns the cached one.
func BuildExt(v ExtVariant) (*ExtImage, error) {
	key, _ := json.Marshal(v)
	sum := sha256.Sum256(key)
	version := fmt.Sprintf("%s-%s-%x", extVersion, treeVersion, sum[:4])
	dir, err := Cached("extv-"+v.Name, version, func(dir string) error { return buildExt(dir, v) })
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return nil, err
	}
	x := new(ExtImage)
	if err := json.Unmarshal(data, x); err != nil {
		return nil, err
	}
	x.Image = filepath.Join(dir, x.Image)
	x.OracleFile = filepath.Join(dir, x.OracleFile)
	return x, nil
}

// PrebuildExt builds the fixtures of vs two at a time (the machines have
// two cores; mkfs -d is mostly single-threaded), so a test iterating
// ExtVariants waits for half as long on a cold cache.
func PrebuildExt(vs ...ExtVariant) error {
	if _, _, err := extSourceTree(false); err != nil {
		return err
	}
	errs := make([]error, len(vs))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			_, errs[i] = BuildExt(v)
			<-sem
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// extSourceTree is the tree ext variants copy in with mkfs -d.
func extSourceTree(big bool) (string, *Manifest, error) {
	o := ExtTree()
	name := "richtree-ext"
	if big {
		o.LargeSize = 70 << 20
		o.BigDir = 30000
		name = "richtree-ext-big"
	}
	return SourceTree(name, o)
}

// fakeUUID derives a stable UUID from a name, so rebuilt fixtures match.
func fakeUUID(name string) string {
	s := sha256.Sum256([]byte(name))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

func buildExt(dir string, v ExtVariant) error {
	src, srcManifest, err := extSourceTree(v.Big)
	if err != nil {
		return err
	}
	img := filepath.Join(dir, "fs.img")
	x := &ExtImage{Variant: v, Image: "fs.img", OracleFile: "oracle.json", UUID: fakeUUID("ext-" + v.Name), Label: v.Name}
	if len(x.Label) > 16 {
		x.Label = x.Label[:16]
	}
	if err := Truncate(img, v.SizeMiB<<20); err != nil {
		return err
	}
	args := append([]string{"-q", "-F", "-L", x.Label, "-U", x.UUID, "-E", "hash_seed=" + fakeUUID("hash-"+v.Name)}, v.Args...)
	args = mergeExtendedOpts(args)
	args = append(args, "-d", src, img)
	if _, err := RunIn("", []string{"E2FSPROGS_FAKE_TIME=1700000000"}, v.Mkfs, args...); err != nil {
		return err
	}
	// Index the directories mkfs -d wrote as linear lists.
	if err := e2fsck(img, "-fyD"); err != nil {
		return err
	}
	if v.Casefold {
		if err := makeCasefoldDir(img, "cf"); err != nil {
			return err
		}
	}
	if err := extReadWrite(img, v, srcManifest, x); err != nil {
		return fmt.Errorf("%s: %w", v.Name, err)
	}
	if v.Casefold {
		// fuse2fs adds names to cf/ as a linear list: index it with the
		// casefolded hash.
		if err := e2fsck(img, "-fyD"); err != nil {
			return err
		}
	}
	if !v.Journal {
		if err := e2fsck(img, "-fn"); err != nil {
			return fmt.Errorf("%s: image not clean after build: %w", v.Name, err)
		}
	}
	feats, bs, err := extFeatures(img)
	if err != nil {
		return err
	}
	x.Features, x.BlockSize = feats, bs
	for _, f := range v.Features {
		if !slices.Contains(feats, f) {
			return fmt.Errorf("%s: feature %s missing from %v", v.Name, f, feats)
		}
	}
	m, err := extOracle(img, v)
	if err != nil {
		return fmt.Errorf("%s: oracle: %w", v.Name, err)
	}
	m.Source = fmt.Sprintf("%s oracle of %s (%s %s)", oracleName(v), v.Name, v.Mkfs, strings.Join(v.Args, " "))
	if err := m.WriteJSON(filepath.Join(dir, x.OracleFile)); err != nil {
		return err
	}
	data, err := json.MarshalIndent(x, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "info.json"), data, 0o644)
}

func oracleName(v ExtVariant) string {
	if v.Oracle == "" {
		return "kernel"
	}
	return v.Oracle
}

// mergeExtendedOpts joins several -E options into one (mke2fs keeps only
// the last).
func mergeExtendedOpts(args []string) []string {
	var out, ext []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-E" && i+1 < len(args) {
			ext = append(ext, args[i+1])
			i++
			continue
		}
		out = append(out, args[i])
	}
	if len(ext) > 0 {
		out = append(out, "-E", strings.Join(ext, ","))
	}
	return out
}

// e2fsck runs e2fsck; exit 1 (errors corrected, which -D always reports)
// is success with -y, and any non-zero exit a failure with -n.
func e2fsck(img, opts string) error {
	_, err := Run("e2fsck", opts, img)
	if err != nil && strings.Contains(opts, "y") && strings.Contains(err.Error(), "exit status 1:") {
		return nil
	}
	return err
}

// extFeatures reads the feature list and block size with dumpe2fs -h.
func extFeatures(img string) ([]string, int, error) {
	out, err := Run("dumpe2fs", "-h", img)
	if err != nil {
		return nil, 0, err
	}
	var feats []string
	bs := 0
	for _, line := range strings.Split(out, "\n") {
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "Filesystem features":
			feats = strings.Fields(val)
		case "Block size":
			bs, _ = strconv.Atoi(strings.TrimSpace(val))
		}
	}
	return feats, bs, nil
}

// makeCasefoldDir makes an empty directory with EXT4_CASEFOLD_FL
// (0x40000000, kernel Documentation/filesystems/ext4/inodes.rst) through
// debugfs, as chattr +F would on a kernel with CONFIG_UNICODE.
func makeCasefoldDir(img, name string) error {
	if _, err := Run("debugfs", "-w", "-R", "mkdir "+name, img); err != nil {
		return err
	}
	out, err := Run("debugfs", "-R", "stat "+name, img)
	if err != nil {
		return err
	}
	_, rest, ok := strings.Cut(out, "Flags: ")
	if !ok {
		return fmt.Errorf("debugfs stat %s: no flags in %q", name, out)
	}
	flags, err := strconv.ParseUint(strings.Fields(rest)[0], 0, 32)
	if err != nil {
		return err
	}
	_, err = Run("debugfs", "-w", "-R", fmt.Sprintf("set_inode_field %s flags %#x", name, flags|0x40000000), img)
	return err
}
