package mount

import (
	"time"

	"github.com/vmmount/vmmount/fsread"
)

// RawDirName is the directory, beside a disk's volumes, that holds the raw
// bytes of the disk ("disk") and of each volume (by volume name), for tools
// that read block devices (file, e2fsck -n, ntfsinfo, sleuthkit).
const RawDirName = ".raw"

// SetTree describes the namespace of a volume set as a mount tree: the same
// paths fsread.Set.Resolve takes. images are the disks' bytes, in the order
// of set.Disks(); each disk's directory gets a .raw directory with them.
func SetTree(set *fsread.Set, images []fsread.Image, mtime time.Time) *Dir {
	return setDir(set, set.Root(), images, mtime)
}

func setDir(set *fsread.Set, d *fsread.Dir, images []fsread.Image, mtime time.Time) *Dir {
	out := &Dir{Mtime: mtime}
	var raw []Entry
	if d.Disk != nil {
		for i, disk := range set.Disks() {
			if disk == d.Disk && i < len(images) {
				raw = append(raw, Entry{"disk", &RawFile{R: images[i], Size: images[i].Size(), Mtime: mtime}})
			}
		}
	}
	for _, sub := range d.Dirs {
		out.Entries = append(out.Entries, Entry{sub.Name, setDir(set, sub, images, mtime)})
	}
	for _, v := range d.Volumes {
		out.Entries = append(out.Entries, Entry{v.Name, &Volume{Name: v.Path, Open: v.FS}})
		if r := v.ReaderAt(); r != nil {
			raw = append(raw, Entry{v.Name, &RawFile{R: r, Size: v.Size, Mtime: mtime}})
		}
	}
	if len(raw) > 0 {
		out.Entries = append(out.Entries, Entry{RawDirName, &Dir{Entries: raw, Mtime: mtime}})
	}
	return out
}
