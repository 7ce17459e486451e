package testimages

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// LoopMount attaches [offset, offset+size) of image to a loop device (read
// only unless writable) and mounts it at a new temporary directory with the
// given mount options. size 0 means to the end. The returned function
// unmounts, detaches and removes the directory. It is the kernel oracle for
// ext and FAT fixtures.
func LoopMount(image string, offset, size int64, writable bool, fstype, opts string) (string, func(), error) {
	args := []string{"--find", "--show", "--offset", strconv.FormatInt(offset, 10)}
	if size > 0 {
		args = append(args, "--sizelimit", strconv.FormatInt(size, 10))
	}
	if !writable {
		args = append(args, "--read-only")
	}
	args = append(args, image)
	out, err := Run("losetup", args...)
	if err != nil {
		return "", nil, err
	}
	dev := strings.TrimSpace(out)
	dir, err := os.MkdirTemp("", "vmmount-oracle-")
	if err != nil {
		Run("losetup", "-d", dev)
		return "", nil, err
	}
	margs := []string{}
	if fstype != "" {
		margs = append(margs, "-t", fstype)
	}
	if opts != "" {
		margs = append(margs, "-o", opts)
	}
	margs = append(margs, dev, dir)
	if _, err := Run("mount", margs...); err != nil {
		Run("losetup", "-d", dev)
		os.Remove(dir)
		return "", nil, err
	}
	cleanup := func() {
		if _, err := Run("umount", dir); err != nil {
			Run("umount", "-l", dir)
		}
		Run("losetup", "-d", dev)
		os.Remove(dir)
	}
	return dir, cleanup, nil
}

// LoopAttach attaches a whole image file to a loop device (with partition
// scanning) and returns the device and a detach function. Used to build
// fixtures with tools that want a block device (sgdisk works on files;
// mkfs on a partition and pvcreate need devices).
func LoopAttach(image string) (string, func(), error) {
	out, err := Run("losetup", "--find", "--show", "--partscan", image)
	if err != nil {
		return "", nil, err
	}
	dev := strings.TrimSpace(out)
	return dev, func() { Run("losetup", "-d", dev) }, nil
}

// Truncate makes a sparse file of size bytes.
func Truncate(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s: %w", name, err)
	}
	return nil
}
