package restore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/virt"
)

// firstDiskDir is the directory of the domain's first file disk.
func firstDiskDir(d *libvirtxml.Domain) string {
	if d.Devices == nil {
		return ""
	}
	for _, disk := range d.Devices.Disks {
		if disk.Device != "cdrom" && disk.Source != nil && disk.Source.File != nil && disk.Source.File.File != "" {
			return filepath.Dir(disk.Source.File.File)
		}
	}
	return ""
}

// planDisks decides where each disk of the point goes and edits the
// domain's disk elements to match.
func planDisks(p *Point, dom *libvirtxml.Domain, name, dir, format string, alt bool) ([]diskPlan, []string, error) {
	var plans []diskPlan
	var warns []string
	done := map[string]bool{}
	if dom.Devices == nil {
		dom.Devices = &libvirtxml.DomainDeviceList{}
	}
	var keep []libvirtxml.DomainDisk
	for _, disk := range dom.Devices.Disks {
		target := ""
		if disk.Target != nil {
			target = disk.Target.Dev
		}
		pd, err := p.Disk(target)
		if err != nil {
			readonly := disk.Device == "cdrom" || disk.Device == "floppy" || disk.ReadOnly != nil
			switch {
			case readonly || !alt:
				warns = append(warns, fmt.Sprintf("disk %s is not in the restore point; kept as the configuration has it", target))
				keep = append(keep, disk)
			default:
				warns = append(warns, fmt.Sprintf("disk %s is not in the restore point; left out of the copy (it would share the original's)", target))
			}
			continue
		}
		done[target] = true
		pl := diskPlan{pd: pd, format: format}
		if pl.format == "" {
			pl.format = imagefmt.FormatQcow2
			if disk.Driver != nil && disk.Driver.Type == imagefmt.FormatRaw {
				pl.format = imagefmt.FormatRaw
			}
		}
		src := disk.Source
		switch {
		case dir != "":
			pl.dst = filepath.Join(dir, name+"-"+target+"."+pl.format)
		case src != nil && src.File != nil && src.File.File != "":
			pl.dst = src.File.File
		case src != nil && src.Block != nil && src.Block.Dev != "":
			pl.dst, pl.device, pl.format = src.Block.Dev, true, imagefmt.FormatRaw
		default:
			return nil, nil, fmt.Errorf("disk %s is not a file or block device in the configuration (a storage pool volume or network disk): restore it with --dir", target)
		}
		if !pl.device {
			disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: pl.dst}}
		}
		if disk.Driver == nil {
			disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
		}
		disk.Driver.Type = pl.format
		disk.BackingStore = nil
		keep = append(keep, disk)
		plans = append(plans, pl)
	}
	dom.Devices.Disks = keep
	for _, pd := range p.Disks {
		if !done[pd.Target] {
			warns = append(warns, fmt.Sprintf("disk %s of the point is not in the domain configuration; not restored (use restore disk)", pd.Target))
		}
	}
	return plans, warns, nil
}

// planFiles places the NVRAM, kernel and initrd saved with the point and
// edits the domain to match.
func planFiles(p *Point, dom *libvirtxml.Domain, name, dir string) ([]filePlan, []string, error) {
	c := p.Point.Manifest.Config
	var plans []filePlan
	var warns []string
	if dom.OS == nil {
		return nil, nil, nil
	}
	if c.NVRAM != "" && dom.OS.NVRam != nil {
		orig := virt.NVRAMPath(dom.OS)
		dst := orig
		if dir != "" || dst == "" {
			if dir == "" {
				return nil, nil, errors.New("the NVRAM has no path in the configuration: give --dir")
			}
			dst = filepath.Join(dir, name+"_VARS.fd")
		}
		dom.OS.NVRam.NVRam, dom.OS.NVRam.Source = dst, nil
		plans = append(plans, filePlan{what: "NVRAM", name: c.NVRAM, dst: dst, mode: 0o600})
	}
	for _, k := range []struct {
		what, saved string
		field       *string
	}{{"kernel", c.Kernel, &dom.OS.Kernel}, {"initrd", c.Initrd, &dom.OS.Initrd}} {
		if k.saved == "" || *k.field == "" {
			continue
		}
		b, err := p.ConfigFile(k.saved)
		if err != nil {
			return nil, nil, err
		}
		cur, err := os.ReadFile(*k.field)
		switch {
		case err == nil && string(cur) == string(b):
			continue // the host has it as it was
		case dir != "":
			dst := filepath.Join(dir, name+"-"+filepath.Base(*k.field))
			plans = append(plans, filePlan{what: k.what, name: k.saved, dst: dst, mode: 0o644})
			*k.field = dst
		case errors.Is(err, os.ErrNotExist):
			plans = append(plans, filePlan{what: k.what, name: k.saved, dst: *k.field, mode: 0o644})
		default:
			warns = append(warns, fmt.Sprintf("%s %s differs from the one saved with the point; kept (give --dir to restore the saved one next to the disks)", k.what, *k.field))
		}
	}
	return plans, warns, nil
}

// checkTargets refuses existing targets unless replace, and returns those
// that do not exist yet (removed again if the restore fails).
func checkTargets(targets []string, replace bool) (created []string, err error) {
	seen := map[string]bool{}
	var exist []string
	for _, t := range targets {
		if seen[t] {
			return nil, fmt.Errorf("%s would be written twice", t)
		}
		seen[t] = true
		if _, err := os.Lstat(t); err == nil {
			exist = append(exist, t)
		} else {
			created = append(created, t)
		}
	}
	if len(exist) > 0 && !replace {
		return nil, fmt.Errorf("%s: %w; --replace overwrites", strings.Join(exist, ", "), ErrExists)
	}
	return created, nil
}

// writeFileAtomic writes a file under a temporary name, syncs it and
// renames it into place.
func writeFileAtomic(name string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+tmpName())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
