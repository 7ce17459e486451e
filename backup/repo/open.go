package repo

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/imagefmt"
)

// OpenedPoint is a restore point opened for reading: its disks' images
// (with their backing chains) and their volumes in one namespace, the
// same paths as for images given directly (/p1/... with one disk,
// /vda/p1/... with several, disks named by their targets).
type OpenedPoint struct {
	Point  *Point
	Images []imagefmt.Image // in manifest disk order
	Set    *fsread.Set
}

// OpenPoint opens a point's images and reads their volumes' headers.
// A missing or unreadable image is an error naming the point and disk.
func OpenPoint(ctx context.Context, p *Point, opts fsread.Options) (*OpenedPoint, error) {
	o := &OpenedPoint{Point: p}
	var srcs []fsread.DiskSource
	for _, d := range p.Manifest.Disks {
		img, err := imagefmt.OpenWith(p.Path(d.Image), imagefmt.Options{Format: d.Format})
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("point %s: disk %s: %w", p.Ref(), d.Target, err)
		}
		if img.Size() != d.VirtualSize && d.VirtualSize != 0 {
			img.Close()
			o.Close()
			return nil, fmt.Errorf("point %s: disk %s: %w: image is %d bytes, manifest says %d", p.Ref(), d.Target, ErrCorrupt, img.Size(), d.VirtualSize)
		}
		o.Images = append(o.Images, img)
		srcs = append(srcs, fsread.DiskSource{Name: d.Target, Image: img, SectorSize: img.Info().LogicalBlock})
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("point %s: %w: no disks", p.Ref(), ErrCorrupt)
	}
	set, err := fsread.OpenSetWith(ctx, srcs, opts)
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("point %s: %w", p.Ref(), err)
	}
	o.Set = set
	return o, nil
}

// FSImages returns the images as fsread.Image, in Set.Disks order.
func (o *OpenedPoint) FSImages() []fsread.Image {
	out := make([]fsread.Image, len(o.Images))
	for i, img := range o.Images {
		out[i] = img
	}
	return out
}

// Close closes the set and the images.
func (o *OpenedPoint) Close() error {
	var errs []error
	if o.Set != nil {
		errs = append(errs, o.Set.Close())
	}
	for _, img := range o.Images {
		errs = append(errs, img.Close())
	}
	return errors.Join(errs...)
}

// ReadConfig returns a saved configuration file of the point (domain XML,
// NVRAM...), by its name in the manifest.
func (p *Point) ReadConfig(name string) ([]byte, error) {
	if !isPlainName(name) {
		return nil, fmt.Errorf("point %s: %w: config file %q", p.Ref(), ErrCorrupt, name)
	}
	return os.ReadFile(p.Path(name))
}
