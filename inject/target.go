package inject

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/fsread/ext"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/qcow2"
	"github.com/vmmount/vmmount/inject/extwrite"
)

// target is the VM whose disks Run writes: its images, their locks and
// read-only views.
type target struct {
	o          *Options
	h          *hypervisor
	domainName string
	uri        string
	disks      []disk
	locks      []*imageLock
	images     []imagefmt.Image
	set        *fsread.Set
	warnings   []string
}

// openTarget finds the disks: from the domain's XML (which must be shut
// off) or the image files given.
func openTarget(ctx context.Context, o *Options) (*target, error) {
	t := &target{o: o, uri: o.Target.URI}
	if t.uri == "" {
		t.uri = DefaultURI
	}
	switch {
	case o.Target.Domain != "" && len(o.Target.Images) > 0:
		return nil, fmt.Errorf("give a domain or images, not both")
	case o.Target.Domain != "":
		h, err := dialLibvirt(ctx, t.uri)
		if err != nil {
			return nil, err
		}
		t.h = h
		dom, err := h.lookupDomain(o.Target.Domain)
		if err != nil {
			t.close()
			return nil, err
		}
		t.domainName = dom.Name
		if err := h.checkShutOff(dom); err != nil {
			t.close()
			return nil, err
		}
		disks, skipped, err := h.domainDisks(dom)
		if err != nil {
			t.close()
			return nil, err
		}
		for _, s := range skipped {
			t.warnings = append(t.warnings, "domain "+dom.Name+": skipping disk "+s)
		}
		t.disks = disks
	case len(o.Target.Images) > 0:
		seen := map[string]int{}
		for _, p := range o.Target.Images {
			abs, err := filepath.Abs(p)
			if err != nil {
				return nil, err
			}
			p = abs
			name := fsread.DiskName(p)
			if seen[name]++; seen[name] > 1 {
				name = fmt.Sprintf("%s_%d", name, seen[name])
			}
			t.disks = append(t.disks, disk{name: name, path: p, format: o.Target.Format})
		}
	default:
		return nil, fmt.Errorf("no target: give a domain or images")
	}
	if len(t.disks) == 0 {
		t.close()
		return nil, fmt.Errorf("domain %s has no disk image to write into", t.domainName)
	}
	return t, nil
}

// lock takes QEMU's image locks on every disk, then checks again that no
// VM uses them (the domain is still shut off; no running domain has the
// images) now that none can start.
func (t *target) lock(ctx context.Context) error {
	var paths []string
	for _, d := range t.disks {
		lk, err := lockImage(d.path, false)
		if err != nil {
			return err
		}
		t.locks = append(t.locks, lk)
		paths = append(paths, d.path)
	}
	if t.h != nil {
		dom, err := t.h.lookupDomain(t.domainName)
		if err != nil {
			return err
		}
		if err := t.h.checkShutOff(dom); err != nil {
			return err
		}
	}
	if err := checkLoopDevices(paths); err != nil {
		return err
	}
	return checkNotUsed(ctx, t.h, t.uri, paths, t.domainName)
}

func (t *target) close() {
	for _, img := range t.images {
		img.Close()
	}
	t.images = nil
	for _, lk := range t.locks {
		lk.release()
	}
	t.locks = nil
	t.h.close()
	t.h = nil
}

// volume is the filesystem GuestDir is in.
type volume struct {
	t      *target
	disk   disk
	idx    int
	img    imagefmt.Image // read-only view of the disk
	path   string         // /p1 in the namespace
	rest   string         // the directory inside it
	off    int64          // byte offset in the disk
	size   int64
	fsType string
	// warnBefore are the reader's warnings before the writes, so
	// verification can tell new ones.
	warnBefore []string
}

// volume opens the disks read-only and finds the volume and directory
// guestDir names.
func (t *target) volume(ctx context.Context, guestDir string) (*volume, error) {
	var srcs []fsread.DiskSource
	for _, d := range t.disks {
		img, err := imagefmt.OpenWith(d.path, imagefmt.Options{Format: d.format})
		if err != nil {
			return nil, err
		}
		t.images = append(t.images, img)
		srcs = append(srcs, fsread.DiskSource{Name: d.name, Image: img, SectorSize: img.Info().LogicalBlock})
	}
	set, err := fsread.OpenSet(ctx, srcs)
	if err != nil {
		return nil, err
	}
	t.set = set
	vol, rest, err := set.Resolve(guestDir)
	if err != nil {
		return nil, notFoundErr{err}
	}
	if vol == nil {
		return nil, notFoundErr{fmt.Errorf("%s is a directory of the namespace, not inside a volume (`vmmount ls` lists them)", guestDir)}
	}
	v := &volume{t: t, path: vol.Path, rest: rest, off: vol.Offset, size: vol.Size, fsType: vol.FSType}
	switch vol.Kind {
	case fsread.KindPartition, fsread.KindDisk:
	default:
		return nil, refusef("%s is an LVM logical volume; inject writes into partitions and whole-disk filesystems only", vol.Path)
	}
	switch vol.FSType {
	case "ext2", "ext3", "ext4", "ntfs":
	default:
		return nil, refusef("%s holds %s; inject writes into ext2, ext3, ext4 and NTFS", vol.Path, vol.FSType)
	}
	v.idx = -1
	for i, d := range t.disks {
		if d.name == vol.Disk || len(t.disks) == 1 {
			v.idx = i
			break
		}
	}
	if v.idx < 0 {
		return nil, fmt.Errorf("%s: disk %q not found", vol.Path, vol.Disk)
	}
	v.disk, v.img = t.disks[v.idx], t.images[v.idx]
	v.disk.format = v.img.Info().Format
	switch v.disk.format {
	case imagefmt.FormatRaw, imagefmt.FormatQcow2:
	default:
		return nil, refusef("%s is a %s image; inject writes raw and qcow2 images", v.disk.path, v.disk.format)
	}
	if q, ok := v.img.(*qcow2.Image); ok {
		if why := qcowRefusal(q.Header()); why != "" {
			return nil, refusef("%s cannot be written in place: %s", v.disk.path, why)
		}
	}
	if v.off < 0 || v.size <= 0 || v.off+v.size > v.img.Size() {
		return nil, fmt.Errorf("%s: volume at %d+%d is outside the %d-byte disk", vol.Path, v.off, v.size, v.img.Size())
	}
	if v.fsType == "ntfs" {
		v.warnBefore = ntfsWarnings(v.section(v.img), v.size, vol.Path)
	} else if r, err := ext.Open(v.section(v.img), v.size, ext.Options{Name: vol.Path}); err == nil {
		v.warnBefore = r.Warnings()
		r.Close()
	}
	return v, nil
}

func (v *volume) section(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, v.off, v.size)
}

// writer opens the volume's filesystem for a transaction.
func (v *volume) writer(now time.Time) (fsWriter, error) {
	if v.fsType == "ntfs" {
		return v.ntfsWriter(now)
	}
	f, err := extwrite.Open(v.section(v.img), v.size, extwrite.Options{Name: v.path, Now: func() time.Time { return now }})
	if err != nil {
		return nil, extErr(err)
	}
	return extAdapter{f}, nil
}

// imageID describes the image file for the undo file.
func imageID(path, format string, virtual int64) (ImageID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return ImageID{}, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		size = virtual // a block device: Stat says 0
	}
	id := ImageID{Path: path, Format: format, FileSize: size, VirtualSize: virtual}
	id.Dev, id.Ino = fileDevIno(st)
	return id, nil
}
