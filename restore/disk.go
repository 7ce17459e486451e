package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// DiskOptions control a disk restore.
type DiskOptions struct {
	// Format of a file target: "raw" (sparse; the default) or "qcow2".
	// A block device target is always written raw.
	Format string
	// Force replaces an existing file (atomically: the new image is
	// renamed over it once complete) and allows writing onto a block
	// device, which always exists.
	Force bool
	// Progress receives the bytes of the virtual disk done.
	Progress progress.Progress
}

// DiskResult describes a restored disk.
type DiskResult struct {
	Target      string `json:"target"` // the disk's name in the point (vda)
	Path        string `json:"path"`
	Format      string `json:"format"`
	BlockDevice bool   `json:"block_device,omitempty"`
	VirtualSize int64  `json:"virtual_size"`
	// Allocated is the space the file takes on the host (0 for a device).
	Allocated int64 `json:"allocated_bytes,omitempty"`
}

// RestoreDisk writes a point's disk, its backing chain flattened, to dst:
// a new standalone image file (sparse raw, or qcow2), or an existing block
// device (--to /dev/X), which must not be mounted or in use. Every block
// is checked against the backup's SHA-256 as it is copied (holes were
// checked when the point was opened). A file is written under a temporary
// name next to dst, fsynced and renamed, so dst is never seen half written
// and a failure, a full disk or ctx cancelled leave nothing behind; a
// device is synced, and on failure its first and last MiB are zeroed so a
// partly written disk is not mistaken for a good one.
//
// An existing dst is refused (ErrExists) without Force.
func RestoreDisk(ctx context.Context, d *PointDisk, dst string, o DiskOptions) (*DiskResult, error) {
	format := strings.ToLower(o.Format)
	if format == "" {
		format = imagefmt.FormatRaw
	}
	if format != imagefmt.FormatRaw && format != imagefmt.FormatQcow2 {
		return nil, fmt.Errorf("disk format %q: want raw or qcow2", o.Format)
	}
	res := &DiskResult{Target: d.Target, Path: dst, Format: format, VirtualSize: d.VirtualSize}
	st, err := os.Stat(dst)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	case d.isLayer(st):
		return nil, fmt.Errorf("%s is an image of the restore point itself", dst)
	case !o.Force:
		return nil, fmt.Errorf("%s: %w; use --force to replace it", dst, ErrExists)
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		if format != imagefmt.FormatRaw {
			return nil, fmt.Errorf("%s is a block device: only raw can be written onto it", dst)
		}
		res.BlockDevice = true
		return res, writeDevice(ctx, d, dst, progress.OrNop(o.Progress))
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s is neither a regular file nor a block device", dst)
	}
	err = imagefmt.Convert(ctx, d.Image, dst, imagefmt.ConvertOptions{Format: format, Progress: o.Progress})
	if err == nil {
		// Convert reads every block that holds data; this finds nothing
		// left unless its reading changes, and keeps the check complete.
		if err = d.checked.checkRest(ctx); err != nil {
			os.Remove(dst)
		}
	}
	if err != nil {
		return nil, err
	}
	var sst syscall.Stat_t
	if syscall.Stat(dst, &sst) == nil {
		res.Allocated = sst.Blocks * 512
	}
	return res, nil
}

// isLayer says whether st is one of the files of the disk's chain.
func (d *PointDisk) isLayer(st os.FileInfo) bool {
	for _, l := range d.raw.Info().Chain() {
		if lst, err := os.Stat(l.Filename); err == nil && os.SameFile(st, lst) {
			return true
		}
	}
	return false
}
