package ext

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// A fixture is an ext image made by mke2fs -d from testimages.RichTree
// (plus what each variant adds), with the kernel's view of it as the
// oracle: a manifest scanned over a read-only loop mount, saved next to the
// image. Images are cached by testimages; bump fixtureVersion when a recipe
// changes.
const fixtureVersion = "v2"

type variant struct {
	name string
	mkfs string   // mkfs.ext2, mkfs.ext3 or mkfs.ext4
	args []string // extra mke2fs arguments
	size int64    // image size
	// index runs e2fsck -fyD after mke2fs so directories get htree
	// indexes (mke2fs -d writes them linear).
	index bool
	// post changes the image after mke2fs (through a loop mount, debugfs).
	post func(img string) error
	// noOracle: tested by its own test (casefold: this kernel lacks
	// CONFIG_UNICODE).
	noOracle bool
	// crash makes the image a copy taken while the kernel had it mounted
	// read-write with committed but not checkpointed transactions, so its
	// journal needs recovery; the kernel oracle mounts another copy,
	// replaying it.
	crash func(mnt string) error
	// rev is appended to fixtureVersion: bump it when only this
	// variant's recipe changes.
	rev string
}

// variants are the fixtures testimages.ExtVariants (TestSharedVariants)
// does not have: triple-indirect blocks, unwritten extents over another
// file's stale data, 2 KiB blocks, 128-byte inodes without journal or
// checksums, a casefolded htree directory made by debugfs, and an ext3
// (no journal checksums, 32-bit, 1 KiB blocks) crash copy.
var variants = []variant{
	{name: "ext2-1k", mkfs: "mkfs.ext2", args: []string{"-b", "1024"}, size: 192 << 20, post: tindFile, rev: "a"},
	{name: "ext4", mkfs: "mkfs.ext4", size: 96 << 20, index: true, post: kernelWrites},
	{name: "ext4-csumseed-2k", mkfs: "mkfs.ext4", args: []string{"-b", "2048", "-O", "64bit,metadata_csum,metadata_csum_seed"}, size: 96 << 20, index: true},
	{name: "ext4-128inode-nojournal", mkfs: "mkfs.ext4", args: []string{"-I", "128", "-O", "^has_journal,^metadata_csum,uninit_bg"}, size: 96 << 20, rev: "a"},
	{name: "ext4-casefold", mkfs: "mkfs.ext4", args: []string{"-O", "casefold"}, size: 96 << 20, post: casefoldDir, noOracle: true, rev: "a"},
	{name: "ext3-journal", mkfs: "mkfs.ext3", args: []string{"-b", "1024"}, size: 128 << 20, crash: crashSession},
}

// tindFile writes, through the kernel, a sparse file whose data reaches
// the triple-indirect blocks of a 1 KiB block map (past 12+256+65536
// blocks = 64.3 MiB).
func tindFile(img string) error {
	return withMount(img, "", func(mnt string) error {
		f, err := os.Create(filepath.Join(mnt, "tind-sparse.bin"))
		if err != nil {
			return err
		}
		defer f.Close()
		for _, off := range []int64{0, 5 << 10, 300 << 10, 64<<20 + 512<<10, 70 << 20} {
			if _, err := f.WriteAt([]byte(strings.Repeat(fmt.Sprintf("block at %d;", off), 200)), off); err != nil {
				return err
			}
		}
		return nil
	})
}

// fixture returns the image path and the oracle manifest of a variant.
func fixture(t *testing.T, v variant) (string, *testimages.Manifest) {
	t.Helper()
	testimages.RequireTools(t, v.mkfs, "e2fsck", "debugfs", "dumpe2fs", "losetup", "mount", "cp")
	testimages.RequireRoot(t)
	dir := testimages.Get(t, "ext-"+v.name, fixtureVersion+v.rev, func(dir string) error {
		return buildVariant(dir, v)
	})
	img := filepath.Join(dir, "image")
	if v.noOracle {
		return img, nil
	}
	m, err := testimages.ReadJSON(filepath.Join(dir, "oracle.json"))
	if err != nil {
		t.Fatal(err)
	}
	return img, m
}

func buildVariant(dir string, v variant) error {
	src, _, err := testimages.SourceTree("richtree-ext", testimages.ExtTree())
	if err != nil {
		return err
	}
	img := filepath.Join(dir, "image")
	if err := testimages.Truncate(img, v.size); err != nil {
		return err
	}
	args := append([]string{"-q", "-F", "-L", v.name, "-U", "2d3c8a7e-1b2f-4c5d-9e8f-0a1b2c3d4e5f", "-E", "hash_seed=1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"}, v.args...)
	args = append(args, "-d", src, img)
	if _, err := testimages.Run(v.mkfs, args...); err != nil {
		return err
	}
	if v.index {
		// e2fsck exits 1 when it changed something, which -D always does.
		if _, err := testimages.Run("e2fsck", "-fyD", img); err != nil && !strings.Contains(err.Error(), "exit status 1") {
			return err
		}
	}
	if v.post != nil {
		if err := v.post(img); err != nil {
			return err
		}
	}
	if v.crash != nil {
		if err := crashCopy(img, v.crash); err != nil {
			return err
		}
	}
	if v.noOracle {
		return nil
	}
	if v.crash != nil {
		// Mounting replays the journal into the image: do it on a copy.
		tmp := filepath.Join(dir, "replayed")
		if _, err := testimages.Run("cp", "--sparse=always", img, tmp); err != nil {
			return err
		}
		defer os.Remove(tmp)
		return writeOracleRW(dir, tmp)
	}
	return writeOracle(dir, img)
}

// writeOracle scans the kernel's read-only mount of img into oracle.json.
func writeOracle(dir, img string) error { return scanMount(dir, img, false) }

// writeOracleRW mounts read-only on a writable loop device, so the kernel
// can replay the journal.
func writeOracleRW(dir, img string) error { return scanMount(dir, img, true) }

func scanMount(dir, img string, writableDev bool) error {
	mnt, cleanup, err := testimages.LoopMount(img, 0, 0, writableDev, "", "ro")
	if err != nil {
		return err
	}
	defer cleanup()
	m, err := testimages.ScanDir(mnt)
	if err != nil {
		return err
	}
	m.Source = "kernel loop mount"
	return m.WriteJSON(filepath.Join(dir, "oracle.json"))
}
