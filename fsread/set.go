package fsread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/vmmount/vmmount/fsread/lvm"
	"github.com/vmmount/vmmount/fsread/part"
)

// Image is the bytes of one disk, as imagefmt.Image gives them.
type Image interface {
	io.ReaderAt
	Size() int64
}

// DiskSource is one disk of a VM.
type DiskSource struct {
	// Name is the disk's name in paths when there are several disks: the
	// guest's device name ("vda") or the image file's base name without
	// extension.
	Name  string
	Image Image
	// SectorSize is the logical sector size when the image records one; 0
	// means 512 for MBR offsets (GPT detects 512 or 4096 itself).
	SectorSize int
}

// Options change how a Set opens filesystems.
type Options struct {
	// MountRoot is the absolute path the namespace is served at (a FUSE
	// mount point). NTFS absolute symlink and junction targets are made
	// absolute under the volume's directory there, as ntfs-3g does.
	MountRoot string
	// NoJournalReplay reads ext3/4 volumes as they are on disk even when
	// their journal needs recovery.
	NoJournalReplay bool
}

// Set is the volumes of one VM's disks, named into one namespace:
//
//	one disk:       /<volume>/<path>        /p1/etc/fstab, /fs/..., /vg0-root/...
//	several disks:  /<disk>/<volume>/<path> /vda/p1/etc/fstab
//	                /<vg>-<lv>/<path>       LVs at the top (they may span disks)
//
// Partitions are "p<N>" with Linux's numbering, a filesystem on a disk
// without partition table is "fs", an LV is "<vg>-<lv>" with "-" doubled
// inside each name, as in /dev/mapper.
//
// Opening a Set reads headers only (partition tables, LVM labels and
// metadata, superblock magics); filesystems open on first use
// (Volume.FS). A damaged partition table or LVM metadata is an error of
// that disk or VG (Disk.Err, Set.Errors) and the rest stays readable.
// A Set is safe for concurrent use; it does not own the images.
type Set struct {
	disks     []*Disk
	volumes   []*Volume // in namespace order
	root      *Dir
	dirs      map[string]*Dir
	byPath    map[string]*Volume
	errs      []error
	warnings  []string
	vgs       []*lvm.VG
	lvVolumes []*Volume
}

// Disk is one disk of the set.
type Disk struct {
	Name string `json:"name"`
	Path string `json:"path"` // "/" with one disk, "/<name>" with several
	Size int64  `json:"size"`
	// Table is the partition table scheme ("gpt", "dos"), "" if none.
	Table      string `json:"table,omitempty"`
	TableID    string `json:"table_id,omitempty"`
	SectorSize int    `json:"sector_size,omitempty"`
	Hybrid     bool   `json:"hybrid_mbr,omitempty"`
	// Err is set when the partition table is damaged beyond use.
	Err      error     `json:"-"`
	Warnings []string  `json:"warnings,omitempty"`
	Volumes  []*Volume `json:"-"`
}

// Dir is a directory of the namespace above the volumes: the root, or a
// disk when there are several.
type Dir struct {
	Name    string
	Path    string
	Disk    *Disk // for a disk directory
	Dirs    []*Dir
	Volumes []*Volume
}

// OpenSet reads the partition tables, LVM metadata and filesystem magics of
// a VM's disks.
func OpenSet(ctx context.Context, disks []DiskSource) (*Set, error) {
	return OpenSetWith(ctx, disks, Options{})
}

// OpenSetWith is OpenSet with options.
func OpenSetWith(ctx context.Context, disks []DiskSource, opts Options) (*Set, error) {
	if len(disks) == 0 {
		return nil, errors.New("no disks")
	}
	s := &Set{dirs: map[string]*Dir{}, byPath: map[string]*Volume{}}
	multi := len(disks) > 1
	names := diskNames(disks)
	var pvs []*lvm.PV
	pvVolume := map[*lvm.PV]*Volume{}
	for i, src := range disks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := &Disk{Name: names[i], Size: src.Image.Size(), Path: "/"}
		if multi {
			d.Path = "/" + d.Name
		}
		s.disks = append(s.disks, d)
		if err := s.scanDisk(ctx, d, src, multi, opts); err != nil {
			return nil, err
		}
		for _, v := range d.Volumes {
			if v.FSType != TypeLVM2PV || v.reason != nil && !errors.Is(v.reason, errPV) {
				continue
			}
			pv, err := lvm.ReadPV(v.r, v.Size, strings.TrimPrefix(v.Path, "/"))
			if err != nil {
				v.reason = fmt.Errorf("%s: %w", v.Path, err)
				continue
			}
			v.PV = &PVInfo{UUID: pv.UUID}
			v.Warnings = append(v.Warnings, pv.Warnings...)
			pvs = append(pvs, pv)
			pvVolume[pv] = v
		}
	}
	if err := s.assembleLVM(ctx, pvs, pvVolume, opts); err != nil {
		return nil, err
	}
	s.index(multi)
	return s, nil
}

// errPV marks a PV volume before its VG is known.
var errPV = errors.New("LVM physical volume")

func (s *Set) scanDisk(ctx context.Context, d *Disk, src DiskSource, multi bool, opts Options) error {
	img := src.Image
	prefix := ""
	if multi {
		prefix = "/" + d.Name
	}
	tab, err := part.Read(img, d.Size, part.Options{Name: d.Name, SectorSize: src.SectorSize})
	switch {
	case errors.Is(err, part.ErrNoTable):
		v := &Volume{Name: "fs", Path: prefix + "/fs", Kind: KindDisk, Disk: d.Name, Size: d.Size,
			r: io.NewSectionReader(img, 0, d.Size)}
		d.Volumes = append(d.Volumes, v)
	case err != nil:
		d.Err = err
		s.errs = append(s.errs, fmt.Errorf("disk %s: %w", d.Name, err))
		return nil
	default:
		d.Table, d.TableID, d.SectorSize, d.Hybrid = tab.Scheme, tab.DiskID, tab.SectorSize, tab.Hybrid
		d.Warnings = append(d.Warnings, tab.Warnings...)
		for _, p := range tab.Partitions {
			if p.Extended {
				continue // a container of logical partitions, listed through them
			}
			name := fmt.Sprintf("p%d", p.Number)
			d.Volumes = append(d.Volumes, &Volume{Name: name, Path: prefix + "/" + name, Kind: KindPartition,
				Disk: d.Name, Offset: p.Start, Size: p.Size, r: io.NewSectionReader(img, p.Start, p.Size),
				Partition: &PartitionInfo{Number: p.Number, Scheme: tab.Scheme, Type: p.Type, TypeName: p.TypeName,
					Name: p.Name, UUID: p.UUID, Bootable: p.Bootable, Logical: p.Logical}})
		}
	}
	for _, v := range d.Volumes {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.probe(v, opts)
	}
	return nil
}

// probe fills in a volume's type, label and UUID and whether it can be
// opened.
func (s *Set) probe(v *Volume, opts Options) {
	v.opts = openOptions{Name: strings.TrimPrefix(v.Path, "/"), NoJournalReplay: opts.NoJournalReplay}
	if opts.MountRoot != "" {
		v.opts.MountPoint = strings.TrimSuffix(opts.MountRoot, "/") + v.Path
	}
	p, err := probeVolume(v.r, v.Size)
	if err != nil {
		v.FSType = TypeUnknown
		v.reason = fmt.Errorf("%s: %w", v.Path, err)
		return
	}
	v.FSType, v.FSVersion, v.Label, v.UUID = p.typ, p.version, p.label, p.uuid
	switch {
	case v.FSType == TypeLVM2PV:
		v.reason = errPV
	case openers[v.FSType] == nil:
		why := unreadable[v.FSType]
		if why == "" {
			why = v.FSType + " is not readable"
		}
		v.reason = notReadable(v.Path, "%s", why)
	}
}
