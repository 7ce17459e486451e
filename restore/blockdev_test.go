package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestDiskRestoreDevice restores onto a loop device holding other data:
// afterwards it reads exactly as the disk backed up (zeros where the disk
// has holes). A device with a mounted filesystem is refused.
func TestDiskRestoreDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	tp := makePoints(t)
	testimages.RequireTools(t, "losetup", "mkfs.ext4")
	p := openTestPoint(t, tp.repo, tp.incr)
	d, _ := p.Disk("vda")
	back := filepath.Join(t.TempDir(), "device.img")
	f, err := os.Create(back)
	if err != nil {
		t.Fatal(err)
	}
	// Old content everywhere, so unwritten holes would show.
	junk := make([]byte, 1<<20)
	for i := range junk {
		junk[i] = 0xa5
	}
	for off := int64(0); off < d.VirtualSize+4<<20; off += int64(len(junk)) {
		f.WriteAt(junk, off)
	}
	f.Close()
	dev, detach, err := testimages.LoopAttach(back)
	if err != nil {
		testimages.Missing(t, "loop device: %v", err)
	}
	defer detach()
	if _, err := RestoreDisk(context.Background(), d, dev, DiskOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("device without Force: %v, want ErrExists", err)
	}
	res, err := RestoreDisk(context.Background(), d, dev, DiskOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	detach()
	os.Truncate(back, d.VirtualSize)
	if fileSHA(t, back) != fileSHA(t, tp.after) {
		t.Errorf("device content differs from the disk backed up")
	}

	// A loop device with a mounted filesystem.
	fsimg := filepath.Join(t.TempDir(), "fs.img")
	testimages.Truncate(fsimg, d.VirtualSize)
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", fsimg)
	dev2, detach2, err := testimages.LoopAttach(fsimg)
	if err != nil {
		t.Fatal(err)
	}
	defer detach2()
	mnt := t.TempDir()
	if err := syscall.Mount(dev2, mnt, "ext4", syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(mnt, 0)
	_, err = RestoreDisk(context.Background(), d, dev2, DiskOptions{Force: true})
	if !errors.Is(err, ErrInUse) {
		t.Errorf("mounted device: %v, want ErrInUse", err)
	}
	t.Logf("refused: %v", err)
}
