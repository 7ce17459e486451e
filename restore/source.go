package restore

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/imagefmt"
)

// Source is what files are restored from: the disks of a restore point or
// disk image files, with their volumes named as the mount shows them
// (fsread.Set: /p1/etc/fstab with one disk, /vda/p1/... with several).
type Source struct {
	Set  *fsread.Set
	imgs []imagefmt.Image // opened here, closed by Close
}

// PointSource reads the files of a checked point (its reads are checked
// against the backup's block digests). The disks are named by their
// targets (vda, vdb). The point stays the caller's.
func PointSource(ctx context.Context, p *Point) (*Source, error) {
	if len(p.Disks) == 0 {
		return nil, fmt.Errorf("point %s holds no disk", p.Point.Ref())
	}
	var disks []fsread.DiskSource
	for _, d := range p.Disks {
		disks = append(disks, fsread.DiskSource{Name: d.Target, Image: d.Image, SectorSize: d.raw.Info().LogicalBlock})
	}
	set, err := fsread.OpenSet(ctx, disks)
	if err != nil {
		return nil, err
	}
	return &Source{Set: set}, nil
}

// ImageSource reads the files of disk image files (any format imagefmt
// reads; format forces one), the disks of one VM. Disks are named by the
// files' base names without extension.
func ImageSource(ctx context.Context, names []string, format string) (_ *Source, err error) {
	s := &Source{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var disks []fsread.DiskSource
	for _, n := range names {
		img, err := imagefmt.OpenWith(n, imagefmt.Options{Format: format})
		if err != nil {
			return nil, err
		}
		s.imgs = append(s.imgs, img)
		disks = append(disks, fsread.DiskSource{Name: fsread.DiskName(n), Image: img, SectorSize: img.Info().LogicalBlock})
	}
	if s.Set, err = fsread.OpenSet(ctx, disks); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the filesystems and the images the source opened.
func (s *Source) Close() error {
	var errs []error
	if s.Set != nil {
		errs = append(errs, s.Set.Close())
	}
	for _, img := range s.imgs {
		errs = append(errs, img.Close())
	}
	return errors.Join(errs...)
}

// Item is one guest object to restore with everything below it.
type Item struct {
	// Guest is its path in the namespace (/p1/etc), for messages.
	Guest string
	FS    fsys.FileSystem
	Ino   uint64
	// Rel is where it goes, as components below the destination.
	Rel []string
}

// Items resolves paths of the namespace into items. Each item goes to
// DEST/<its last component>, as cp -a places its sources; with parents,
// to DEST/<its whole path> (cp --parents). A path naming a directory of
// the namespace ("/", or "/vda" with several disks) stands for the
// volumes below it, which keep their names. A symlink named by a path is
// restored as the symlink; symlinks before the last component are
// followed inside the guest filesystem. Unreadable volumes under a
// namespace directory (swap, encrypted, unknown) are left out and
// returned as warnings; named directly they are an error.
func (s *Source) Items(paths []string, parents bool) (items []Item, warnings []string, err error) {
	seen := map[string]string{}
	for _, p := range paths {
		clean := path.Clean("/" + p)
		vol, rest, err := s.Set.Resolve(clean)
		if err != nil {
			return nil, nil, err
		}
		var got []Item
		if vol == nil {
			var w []string
			got, w = s.namespaceItems(clean)
			warnings = append(warnings, w...)
			if len(got) == 0 {
				return nil, warnings, fmt.Errorf("%s: %w: no readable volume", clean, fsys.ErrUnsupported)
			}
		} else {
			it, err := volumeItem(vol, rest, clean)
			if err != nil {
				return nil, warnings, err
			}
			got = []Item{it}
		}
		base := path.Dir(clean)
		if parents {
			base = "/"
		}
		for _, it := range got {
			rel := strings.TrimPrefix(strings.TrimPrefix(it.Guest, base), "/")
			if rel == "" {
				return nil, warnings, fmt.Errorf("%s: restoring the whole namespace needs no path", it.Guest)
			}
			it.Rel = strings.Split(rel, "/")
			if other, dup := seen[rel]; dup {
				return nil, warnings, fmt.Errorf("%s and %s would both be restored as %s (use --parents to keep whole paths)", other, it.Guest, rel)
			}
			seen[rel] = it.Guest
			items = append(items, it)
		}
	}
	return items, warnings, nil
}

// namespaceItems are the readable volumes below a namespace directory.
func (s *Source) namespaceItems(dir string) (items []Item, warnings []string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for _, v := range s.Set.Volumes() {
		if !strings.HasPrefix(v.Path, prefix) {
			continue
		}
		if !v.Readable() {
			if v.FSType != fsread.TypeLVM2PV { // its LVs are listed themselves
				warnings = append(warnings, fmt.Sprintf("%s left out: %v", v.Path, v.Err()))
			}
			continue
		}
		it, err := volumeItem(v, ".", v.Path)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s left out: %v", v.Path, err))
			continue
		}
		items = append(items, it)
	}
	return items, warnings
}

func volumeItem(v *fsread.Volume, rest, guest string) (Item, error) {
	f, err := v.FS()
	if err != nil {
		return Item{}, err
	}
	ino, err := fsys.NewFS(f).Resolve("restore", rest, false)
	if err != nil {
		return Item{}, fmt.Errorf("%s: %w", guest, err)
	}
	return Item{Guest: guest, FS: f, Ino: ino}, nil
}
