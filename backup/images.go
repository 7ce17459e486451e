package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
)

// Images is a Source made of plain image files, for hosts without libvirt
// and for disks of VMs that are shut off. Images in use by a running QEMU
// (which holds its write lock on them) are refused: their copy would be
// inconsistent.
type Images struct {
	Name  string
	UUID  string
	Disks []ImageDisk
	// Config is a file saved with the point (a libvirt domain XML, say);
	// "" for none.
	Config string
}

// ImageDisk is one disk image.
type ImageDisk struct {
	Target string // the name the disk has in the point: vda, disk0, ...
	Path   string
	Format string // "" to detect
}

func (s *Images) Open(ctx context.Context) (repo.VMInfo, error) {
	return repo.VMInfo{Name: s.Name, UUID: s.UUID}, repo.CheckVMName(s.Name)
}

func (s *Images) Begin(ctx context.Context, req CaptureRequest) (_ Session, err error) {
	if len(s.Disks) == 0 {
		return nil, ErrNoDisks
	}
	sess := &imagesSession{src: s}
	defer func() {
		if err != nil {
			sess.End(ctx, false)
		}
	}()
	seen := map[string]bool{}
	for _, d := range s.Disks {
		if err := repo.CheckVMName(d.Target); err != nil || seen[d.Target] {
			return nil, fmt.Errorf("disk name %q: invalid or given twice", d.Target)
		}
		seen[d.Target] = true
		lk, err := lockImage(d.Path)
		if err != nil {
			return nil, err
		}
		sess.locks = append(sess.locks, lk)
		img, err := imagefmt.OpenWith(d.Path, imagefmt.Options{Format: d.Format})
		if err != nil {
			return nil, err
		}
		sess.imgs = append(sess.imgs, img)
		sess.disks = append(sess.disks, &CaptureDisk{
			Target:       d.Target,
			Source:       absPath(d.Path),
			SourceFormat: img.Info().Format,
			Reader:       img,
			Allocated:    imageAllocation(img),
		})
	}
	return sess, nil
}

type imagesSession struct {
	src   *Images
	locks []*imageLock
	imgs  []imagefmt.Image
	disks []*CaptureDisk
}

func (s *imagesSession) Mode() string                        { return repo.ModeImages }
func (s *imagesSession) Consistency() string                 { return repo.ConsistencyOffline }
func (s *imagesSession) Disks() []*CaptureDisk               { return s.disks }
func (s *imagesSession) Committed(ctx context.Context) error { return nil }
func (s *imagesSession) Report() SessionReport               { return SessionReport{} }

func (s *imagesSession) End(ctx context.Context, ok bool) error {
	var errs []error
	for _, img := range s.imgs {
		errs = append(errs, img.Close())
	}
	s.imgs = nil
	for _, lk := range s.locks {
		lk.release()
	}
	s.locks = nil
	return errors.Join(errs...)
}

func (s *imagesSession) SaveConfig(ctx context.Context, out *configOut) error {
	if s.src.Config == "" {
		return nil
	}
	b, err := os.ReadFile(s.src.Config)
	if err != nil {
		return err
	}
	name := filepath.Base(s.src.Config)
	var dom libvirtxml.Domain
	if dom.Unmarshal(string(b)) == nil {
		name = domainXMLFile
		out.c.DomainXML = name
	} else if repo.CheckVMName(name) != nil || name == repo.ManifestFile {
		name = "config"
	}
	return out.bytes(name, b)
}

// domainXMLFile is the domain XML's name in a point.
const domainXMLFile = "domain.xml"

// imageAllocation lists the data ranges of an image's guest view.
func imageAllocation(img imagefmt.Image) func(off, n int64) ([]Range, error) {
	return func(off, n int64) ([]Range, error) {
		exts, err := img.Extents(off, n)
		if err != nil {
			return nil, err
		}
		var out []Range
		for _, e := range exts {
			if e.Kind != imagefmt.Data || e.Len <= 0 {
				continue
			}
			if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == e.Off {
				out[k-1].Len += e.Len
				continue
			}
			out = append(out, Range{e.Off, e.Len})
		}
		return alignRanges(out, img.Size()), nil
	}
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
