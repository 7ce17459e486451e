package inject

import (
	"os"
	"path/filepath"
	"strings"
)

// checkLoopDevices refuses images attached to a loop device: the kernel
// may have the filesystem mounted through it (losetup, kpartx, a mount -o
// loop), and a loop device takes none of QEMU's locks. The attachments are
// in /sys/block/loop*/loop/backing_file.
func checkLoopDevices(paths []string) error {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if len(files) == 0 {
		return nil
	}
	var ids []os.FileInfo
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			ids = append(ids, st)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		st, err := os.Stat(backing)
		if err != nil {
			continue
		}
		for i, id := range ids {
			if os.SameFile(st, id) {
				dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
				return refusef("%s is attached to %s (losetup, or mounted with -o loop): the host kernel may have its filesystem mounted; unmount and detach it first", paths[i], dev)
			}
		}
	}
	return nil
}
