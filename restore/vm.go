package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/internal/progress"
	"github.com/vmmount/vmmount/internal/virt"
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
		what := fmt.Sprintf("%s (%s, %s)", e.dom.Name, virt.FormatUUID(e.dom.UUID), virt.StateName(e.state))
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
