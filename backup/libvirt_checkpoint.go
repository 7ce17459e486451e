package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/backup/repo"
)

// checkpointPrefix starts the name of every checkpoint vmmount makes; one
// per point, named after it ("vmmount-20260301T020000Z").
const checkpointPrefix = "vmmount-"

// incrementalDisks decides, per disk, whether the job exports the changes
// since the parent point: the parent recorded a checkpoint for the disk
// and libvirt still has it with a bitmap for that disk. Otherwise the disk
// is read whole and compared with the parent's block hashes.
func (s *Domain) incrementalDisks(ctx context.Context, picked []*domainDisk, parent *repo.Point) ([]*pullDisk, error) {
	cps := map[string]*libvirtxml.DomainCheckpoint{}
	var out []*pullDisk
	for _, dd := range picked {
		pd := &pullDisk{domainDisk: dd}
		out = append(out, pd)
		if parent == nil || dd.format != "qcow2" {
			continue
		}
		name := ""
		for _, d := range parent.Manifest.Disks {
			if d.Target == dd.target {
				name = d.Checkpoint
			}
		}
		if name == "" {
			continue
		}
		cp, ok := cps[name]
		if !ok {
			var err error
			if cp, err = s.checkpoint(ctx, name); err != nil {
				return nil, err
			}
			cps[name] = cp
		}
		if cp == nil || cp.Disks == nil {
			continue
		}
		for _, cd := range cp.Disks.Disks {
			if cd.Name == dd.target && cd.Checkpoint == "bitmap" {
				pd.incremental = name
			}
		}
	}
	return out, nil
}

// checkpoint reads a checkpoint's XML; nil if it does not exist.
func (s *Domain) checkpoint(ctx context.Context, name string) (*libvirtxml.DomainCheckpoint, error) {
	var x string
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		cp, err := l.DomainCheckpointLookupByName(s.dom, name, 0)
		if err != nil {
			return err
		}
		x, err = l.DomainCheckpointGetXMLDesc(cp, 0)
		return err
	})
	if libvirtCode(err, libvirt.ErrNoDomainCheckpoint) {
		return nil, nil
	}
	if err != nil {
		return nil, s.vmErr(fmt.Errorf("checkpoint %s: %w", name, err))
	}
	var cp libvirtxml.DomainCheckpoint
	if err := cp.Unmarshal(x); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return &cp, nil
}

// checkpointXML describes the checkpoint a point begins: a bitmap in each
// picked qcow2 disk (QEMU keeps persistent bitmaps only in qcow2), none in
// the others. "" when no disk can have one.
func checkpointXML(name string, d *libvirtxml.Domain, disks []*pullDisk) (string, error) {
	want := map[string]bool{}
	any := false
	for _, pd := range disks {
		if pd.format == "qcow2" {
			want[pd.target] = true
			any = true
		}
	}
	if !any {
		return "", nil
	}
	c := libvirtxml.DomainCheckpoint{Name: name, Description: "vmmount restore point", Disks: &libvirtxml.DomainCheckpointDisks{}}
	for _, x := range d.Devices.Disks {
		if x.Target == nil || x.Target.Dev == "" || (x.Device != "" && x.Device != "disk") {
			continue
		}
		kind := "no"
		if want[x.Target.Dev] {
			kind = "bitmap"
		}
		c.Disks.Disks = append(c.Disks.Disks, libvirtxml.DomainCheckpointDisk{Name: x.Target.Dev, Checkpoint: kind})
	}
	return c.Marshal()
}

// deleteCheckpoint deletes a checkpoint if it exists; libvirt merges its
// bitmap into its parent's, so changes stay tracked from the parent on.
func (s *Domain) deleteCheckpoint(ctx context.Context, name string) error {
	err := s.h.do(ctx, true, func(l *libvirt.Libvirt) error {
		cp, err := l.DomainCheckpointLookupByName(s.dom, name, 0)
		if err != nil {
			return err
		}
		return l.DomainCheckpointDelete(cp, 0)
	})
	if libvirtCode(err, libvirt.ErrNoDomainCheckpoint) || libvirt.IsNotFound(err) {
		return nil
	}
	return err
}

// dropCheckpointsBefore deletes vmmount's checkpoints other than keep:
// each costs QEMU a bitmap updated on every guest write, and only the one
// of the newest point is used.
func (s *Domain) dropCheckpointsBefore(ctx context.Context, keep string) error {
	var names []string
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		cps, _, err := l.DomainListAllCheckpoints(s.dom, -1, 0)
		for _, cp := range cps {
			names = append(names, cp.Name)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("listing the checkpoints of %s: %w", s.vm.Name, err)
	}
	var errs []error
	for _, n := range names {
		if n == keep || !strings.HasPrefix(n, checkpointPrefix) {
			continue
		}
		if err := s.deleteCheckpoint(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("deleting the old checkpoint %s of %s: %w", n, s.vm.Name, err))
		}
	}
	return errors.Join(errs...)
}
