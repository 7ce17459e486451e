package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// VMOptions control a whole-VM restore.
type VMOptions struct {
	// Conn is the hypervisor the VM is checked against and defined in.
	Conn *libvirt.Libvirt
	// Name of the restored VM. A name other than the original's, or
	// NewIdentity, makes an alternate-location copy: new UUID and MAC
	// addresses, disks and NVRAM in Dir. Empty keeps the original name
	// (or, with NewIdentity, adds the point's id to it).
	Name        string
	NewIdentity bool
	// Dir receives the disks (<name>-<target>.<format>), NVRAM and
	// console logs. Default for a copy: the directory of the original's
	// first disk. A disaster recovery without Dir puts every file back
	// where it was.
	Dir string
	// Format of the disk images: "" keeps each disk's original format
	// (qcow2 or raw), else "qcow2" or "raw". Block devices get raw.
	Format string
	// Define defines the domain in libvirt; Start also starts it.
	// Without either, the domain XML is written next to the disks.
	Define, Start bool
	// Replace allows a domain of the same name or UUID to be replaced,
	// if it is shut off, and existing disk, NVRAM and XML files to be
	// overwritten; without it they are refused before anything is
	// written.
	Replace  bool
	Progress progress.Progress
	// Notify receives a line per step (the library prints nothing).
	Notify func(msg string)
}

// VMResult describes a restored VM.
type VMResult struct {
	Name        string        `json:"name"`
	UUID        string        `json:"uuid"`
	NewIdentity bool          `json:"new_identity"`
	Disks       []*DiskResult `json:"disks"`
	NVRAM       string        `json:"nvram,omitempty"`
	Kernel      string        `json:"kernel,omitempty"`
	Initrd      string        `json:"initrd,omitempty"`
	XMLFile     string        `json:"xml_file,omitempty"`
	Defined     bool          `json:"defined"`
	Started     bool          `json:"started"`
	// Replaced names the domain(s) whose definition was replaced.
	Replaced []string `json:"replaced,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// XML is the domain definition restored.
	XML string `json:"-"`
}

// diskPlan is one disk to write.
type diskPlan struct {
	pd     *PointDisk
	dst    string
	format string
	device bool
}

// filePlan is a configuration file to write (NVRAM, kernel, initrd).
type filePlan struct {
	what, name, dst string
	mode            os.FileMode
}

// RestoreVM restores the whole VM of a point: its disks (flattened,
// checked against the backup's checksums), NVRAM and direct-boot kernel
// and initrd, and its domain definition.
//
// Disaster recovery (the original name, no NewIdentity) keeps the name,
// UUID, MAC addresses and disk paths; it is refused while a domain with
// that name or UUID exists, unless Replace and that domain is shut off.
// An alternate-location copy gets a new name, UUID and MACs, and its
// files in Dir; the XML is edited with libvirtxml. Everything is checked
// before anything is written: the point, the domains in the way, every
// target file. Files created are removed again if a later step fails.
func RestoreVM(ctx context.Context, p *Point, o VMOptions) (res *VMResult, err error) {
	if o.Conn == nil {
		return nil, errors.New("restore vm needs a libvirt connection")
	}
	_, dom, err := p.DomainXML()
	if err != nil {
		return nil, err
	}
	alt := o.NewIdentity || (o.Name != "" && o.Name != dom.Name)
	name := o.Name
	if name == "" {
		name = dom.Name
		if alt {
			name = dom.Name + "-" + p.Point.ID
		}
	}
	if !plainName(name) {
		return nil, fmt.Errorf("domain name %q: not a plain name", name)
	}
	dir := o.Dir
	if alt && dir == "" {
		dir = firstDiskDir(dom)
		if dir == "" {
			return nil, errors.New("the VM has no file disk to place the copy next to: give --dir")
		}
	}
	if dir != "" {
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, err
		}
	}
	origName := dom.Name
	if alt {
		Renamed(dom, name, dir)
	} else {
		ResetGenID(dom)
	}
	res = &VMResult{Name: name, UUID: dom.UUID, NewIdentity: alt}
	notify := func(format string, args ...any) {
		if o.Notify != nil {
			o.Notify(fmt.Sprintf(format, args...))
		}
	}

	// Everything in the way is found before anything is written.
	existing, err := findDomain(o.Conn, name, dom.UUID)
	if err != nil {
		return nil, err
	}
	for _, e := range existing {
		what := fmt.Sprintf("%s (%s, %s)", e.dom.Name, formatUUID(e.dom.UUID), stateName(e.state))
		if !o.Replace {
			return nil, fmt.Errorf("%w: %s; --replace replaces it while it is shut off", ErrDomainExists, what)
		}
		if e.state != libvirt.DomainShutoff {
			return nil, fmt.Errorf("%w: %s; shut it down first", ErrDomainActive, what)
		}
		res.Replaced = append(res.Replaced, e.dom.Name)
	}
	disks, warns, err := planDisks(p, dom, name, dir, o.Format, alt)
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, warns...)
	files, warns, err := planFiles(p, dom, name, dir)
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, warns...)
	xmlFile := ""
	if !o.Define && !o.Start {
		xmlDir := dir
		if xmlDir == "" && len(disks) > 0 {
			xmlDir = filepath.Dir(disks[0].dst)
		}
		if xmlDir == "" {
			return nil, errors.New("nowhere to write the domain XML: give --dir, or --define")
		}
		xmlFile = filepath.Join(xmlDir, name+".xml")
	}
	var targets []string
	for _, d := range disks {
		targets = append(targets, d.dst)
	}
	for _, f := range files {
		targets = append(targets, f.dst)
	}
	if xmlFile != "" {
		targets = append(targets, xmlFile)
	}
	created, err := checkTargets(targets, o.Replace)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, f := range created {
				os.Remove(f)
			}
		}
	}()

	for _, d := range disks {
		if err := os.MkdirAll(filepath.Dir(d.dst), 0o755); err != nil {
			return nil, err
		}
		notify("restoring disk %s to %s (%s)", d.pd.Target, d.dst, d.format)
		dr, err := RestoreDisk(ctx, d.pd, d.dst, DiskOptions{Format: d.format, Force: o.Replace, Progress: o.Progress})
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.pd.Target, err)
		}
		res.Disks = append(res.Disks, dr)
	}
	for _, f := range files {
		b, err := p.ConfigFile(f.name)
		if err != nil {
			return nil, err
		}
		notify("restoring %s to %s", f.what, f.dst)
		if err := writeFileAtomic(f.dst, b, f.mode); err != nil {
			return nil, err
		}
		switch f.what {
		case "NVRAM":
			res.NVRAM = f.dst
		case "kernel":
			res.Kernel = f.dst
		case "initrd":
			res.Initrd = f.dst
		}
	}
	x, err := dom.Marshal()
	if err != nil {
		return nil, err
	}
	res.XML = x
	if xmlFile != "" {
		if err := writeFileAtomic(xmlFile, []byte(x+"\n"), 0o600); err != nil {
			return nil, err
		}
		res.XMLFile = xmlFile
		return res, nil
	}
	if err := defineReplacing(o.Conn, existing, x); err != nil {
		return nil, err
	}
	res.Defined = true
	notify("defined domain %s (was %s)", name, origName)
	if o.Start {
		d, err := o.Conn.DomainLookupByName(name)
		if err == nil {
			err = o.Conn.DomainCreate(d)
		}
		if err != nil {
			// The VM is restored and defined; only starting failed.
			res.Warnings = append(res.Warnings, fmt.Sprintf("starting %s: %v", name, err))
			return res, fmt.Errorf("domain %s restored and defined, but starting it failed: %w", name, err)
		}
		res.Started = true
		notify("started domain %s", name)
	}
	return res, nil
}

// defineReplacing undefines the domains in the way and defines x; if that
// fails, it puts their definitions back.
func defineReplacing(l *libvirt.Libvirt, existing []*existingDomain, x string) error {
	var removed []*existingDomain
	undo := func() {
		for _, e := range removed {
			l.DomainDefineXMLFlags(e.xml, 0)
		}
	}
	for _, e := range existing {
		if err := l.DomainUndefineFlags(e.dom, undefineFlags); err != nil {
			undo()
			return fmt.Errorf("undefining %s: %w", e.dom.Name, err)
		}
		removed = append(removed, e)
	}
	if _, err := l.DomainDefineXMLFlags(x, libvirt.DomainDefineValidate); err != nil {
		undo()
		return fmt.Errorf("defining the domain: %w", err)
	}
	return nil
}

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
		orig := nvramPath(dom.OS)
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

func nvramPath(os *libvirtxml.DomainOS) string {
	if os.NVRam == nil {
		return ""
	}
	if os.NVRam.NVRam != "" {
		return os.NVRam.NVRam
	}
	if os.NVRam.Source != nil && os.NVRam.Source.File != nil {
		return os.NVRam.Source.File.File
	}
	return ""
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

func formatUUID(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
