package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/testimages"
)

func fileSHA(t testing.TB, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func openTestPoint(t *testing.T, r *repo.Repo, ref string) *Point {
	t.Helper()
	p, err := OpenPoint(context.Background(), r, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestDiskRestore flattens the incremental point's chain into raw and
// qcow2 images: the raw one equals `qemu-img convert -O raw` of the
// chain (and the disk backed up), the qcow2 one compares equal with
// qemu-img compare. An existing target is refused without Force.
func TestDiskRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	p := openTestPoint(t, tp.repo, tp.incr)
	d, err := p.Disk("vda")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "vda.raw")
	res, err := RestoreDisk(context.Background(), d, raw, DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oracle := filepath.Join(dir, "oracle.raw")
	testimages.MustRun(t, "qemu-img", "convert", "-O", "raw", d.Path, oracle)
	if got, want := fileSHA(t, raw), fileSHA(t, oracle); got != want {
		t.Errorf("restored raw disk differs from qemu-img convert -O raw of the chain")
	}
	if fileSHA(t, raw) != fileSHA(t, tp.after) {
		t.Errorf("restored raw disk differs from the disk backed up")
	}
	if res.Allocated >= res.VirtualSize/2 {
		t.Errorf("raw restore allocates %d of %d bytes: not sparse", res.Allocated, res.VirtualSize)
	}
	t.Logf("%+v", *res)

	q := filepath.Join(dir, "vda.qcow2")
	if _, err := RestoreDisk(context.Background(), d, q, DiskOptions{Format: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	testimages.MustRun(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", q, tp.after)
	if info := testimages.MustRun(t, "qemu-img", "info", q); strings.Contains(info, "backing file") {
		t.Errorf("restored qcow2 has a backing file:\n%s", info)
	}

	if _, err := RestoreDisk(context.Background(), d, raw, DiskOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("existing target: %v, want ErrExists", err)
	}
	full := openTestPoint(t, tp.repo, tp.full)
	fd, _ := full.Disk("vda")
	if _, err := RestoreDisk(context.Background(), fd, raw, DiskOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, raw) != fileSHA(t, tp.source) {
		t.Errorf("--force restore of the full point differs from its source")
	}
	if _, err := RestoreDisk(context.Background(), d, d.Path, DiskOptions{Force: true}); err == nil {
		t.Errorf("restoring a point's disk over its own image was not refused")
	}
	checkNoTemp(t, dir)
}

// checkNoTemp fails when a directory holds temporary output.
func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// qemuDataOffset returns the host offset of the first data cluster the
// top image of a chain stores.
func qemuDataOffset(t *testing.T, image string) int64 {
	t.Helper()
	out := testimages.MustRun(t, "qemu-img", "map", "--output=json", image)
	var m []struct {
		Data   bool  `json:"data"`
		Depth  int   `json:"depth"`
		Offset int64 `json:"offset"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	for _, e := range m {
		if e.Data && e.Depth == 0 && e.Offset > 0 {
			return e.Offset
		}
	}
	t.Fatalf("no data cluster in %s", image)
	return 0
}

// TestDiskRestoreCorrupt: a data cluster damaged in the point's image
// passes the checks made when it is opened (headers, sizes) and is found
// by the block checksums as the disk is copied: the restore fails naming
// the block, and leaves no output.
func TestDiskRestoreCorrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	incr, _ := tp.repo.Point(tp.incr)
	img := incr.Path(incr.Manifest.Disks[0].Image)
	off := qemuDataOffset(t, img)
	b := make([]byte, 1)
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.ReadAt(b, off+100)
	b[0] ^= 0x55
	f.WriteAt(b, off+100)
	f.Close()

	p := openTestPoint(t, tp.repo, tp.incr)
	d, _ := p.Disk("vda")
	dir := t.TempDir()
	for _, format := range []string{"raw", "qcow2"} {
		dst := filepath.Join(dir, "vda."+format)
		_, err := RestoreDisk(context.Background(), d, dst, DiskOptions{Format: format})
		var be *BlockError
		if !errors.As(err, &be) || !errors.Is(err, repo.ErrCorrupt) {
			t.Fatalf("%s: restore of a damaged point: %v, want a BlockError", format, err)
		}
		t.Logf("%s: %v", format, err)
		if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: output left after a failed check: %v", format, err)
		}
	}
	checkNoTemp(t, dir)
}

// TestPointHoleRefused: a block the image leaves empty but the backup
// saw data in is refused when the point is opened, before anything is
// written.
func TestPointHoleRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	pt, _ := tp.repo.Point(tp.full)
	disk := &pt.Manifest.Disks[0]
	sums, err := repo.ReadBlockHashes(pt.Path(disk.Hashes))
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagefmt.Open(pt.Path(disk.Image))
	if err != nil {
		t.Fatal(err)
	}
	exts, err := img.Extents(0, img.Size())
	img.Close()
	if err != nil {
		t.Fatal(err)
	}
	last := -1 // the last block wholly in an extent without data
	for _, e := range exts {
		if e.Kind != imagefmt.Data {
			if b := (e.Off+e.Len)/sums.BlockSize - 1; b*sums.BlockSize >= e.Off {
				last = int(b)
			}
		}
	}
	if last < 0 || sums.Sums[last] != repo.ZeroSum(sums.BlockLen(last)) {
		t.Fatalf("no hole found in the fixture (%d)", last)
	}
	sums.Sums[last][0] ^= 1
	if err := sums.Write(pt.Path(disk.Hashes)); err != nil {
		t.Fatal(err)
	}
	disk.ContentSHA256 = sums.Digest()
	mb, _ := json.MarshalIndent(pt.Manifest, "", "  ")
	if err := os.WriteFile(pt.Path(repo.ManifestFile), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = OpenPoint(context.Background(), tp.repo, tp.full)
	var be *BlockError
	if !errors.As(err, &be) || !be.Hole || be.Block != int64(last) {
		t.Fatalf("point whose image lacks data the backup saw: %v", err)
	}
	t.Logf("refused: %v", err)
}

// TestDiskRestoreFull restores onto a small tmpfs: ENOSPC, no output.
func TestDiskRestoreFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=20m"); err != nil {
		testimages.Missing(t, "mounting a tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, 0)
	p := openTestPoint(t, tp.repo, tp.incr)
	d, _ := p.Disk("vda")
	dst := filepath.Join(dir, "vda.raw")
	_, err := RestoreDisk(context.Background(), d, dst, DiskOptions{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("restore onto a full filesystem: %v, want ENOSPC", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RestoreDisk(ctx, d, filepath.Join(t.TempDir(), "x.raw"), DiskOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled restore: %v", err)
	}
}
