package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/imagefmt"
)

// maxWalkEntries bounds the entries walked per filesystem (a hostile or
// looping directory tree must not run forever).
const maxWalkEntries = 50_000_000

// verifyFilesystems opens every volume of the point's disks and walks each
// filesystem vmmount reads: every directory listed, every entry stat'ed,
// every symlink read, every regular file opened (its block map parsed).
func verifyFilesystems(ctx context.Context, imgs []imagefmt.Image, names []string, rep *PointReport) {
	var srcs []fsread.DiskSource
	for i, im := range imgs {
		srcs = append(srcs, fsread.DiskSource{Name: names[i], Image: im})
	}
	set, err := fsread.OpenSet(ctx, srcs)
	if err != nil {
		rep.fault("reading the volumes: %v", err)
		return
	}
	defer set.Close()
	for _, e := range set.Errors() {
		rep.fault("%v", e)
	}
	byDisk := map[string]*DiskReport{}
	for i := range rep.Disks {
		byDisk[rep.Disks[i].Target] = &rep.Disks[i]
	}
	for _, v := range set.Volumes() {
		fr := FSReport{Volume: v.Path, Type: v.FSType}
		switch {
		case v.FSType == fsread.TypeLVM2PV:
			continue // its LVs are volumes of their own
		case !v.Readable():
			fr.Skipped = v.Err().Error()
		default:
			n, err := walkFS(ctx, v)
			fr.Entries = n
			if err != nil {
				fr.Error = err.Error()
				rep.fault("filesystem %s (%s): %v", v.Path, v.FSType, err)
			}
		}
		dr := byDisk[v.Disk]
		if dr == nil && len(rep.Disks) > 0 {
			dr = &rep.Disks[0] // LVs: listed with the first disk
		}
		if dr != nil {
			dr.Filesystems = append(dr.Filesystems, fr)
		}
	}
}

// walkFS walks a volume's filesystem from the root.
func walkFS(ctx context.Context, v *fsread.Volume) (int64, error) {
	f, err := v.FS()
	if err != nil {
		return 0, err
	}
	var n int64
	var errs []error
	seen := map[uint64]bool{}
	stack := []uint64{f.Root()}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[dir] {
			continue // a directory reached twice: hard-linked or looping
		}
		seen[dir] = true
		ents, err := f.ReadDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("directory inode %d: %w", dir, err))
			continue
		}
		for _, e := range ents {
			if n++; n > maxWalkEntries {
				return n, fmt.Errorf("more than %d entries", maxWalkEntries)
			}
			st, err := f.Stat(e.Ino)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q (inode %d): %w", e.Name, e.Ino, err))
				continue
			}
			switch st.Mode & 0o170000 {
			case 0o040000:
				stack = append(stack, e.Ino)
			case 0o120000:
				if _, err := f.Readlink(e.Ino); err != nil {
					errs = append(errs, fmt.Errorf("symlink %q (inode %d): %w", e.Name, e.Ino, err))
				}
			case 0o100000:
				fl, err := f.Open(e.Ino)
				if err == nil {
					_, err = fl.Extents()
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("file %q (inode %d): %w", e.Name, e.Ino, err))
				}
			}
			if len(errs) > 10 {
				return n, errors.Join(errs...)
			}
		}
	}
	return n, errors.Join(errs...)
}
