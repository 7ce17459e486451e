package inject

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/internal/virt"
)

// DefaultURI is the libvirt connection used unless told otherwise.
const DefaultURI = virt.DefaultURI

// disk is one disk image of the VM.
type disk struct {
	name   string // guest device (vda) or the image's base name
	path   string
	format string // raw or qcow2; "" to detect
}

// hypervisor is a connection to the local libvirtd.
type hypervisor struct {
	l   *libvirt.Libvirt
	uri string
}

// dialLibvirt connects to uri, which must be this host's hypervisor: the
// images are written here.
func dialLibvirt(ctx context.Context, uri string) (*hypervisor, error) {
	u, err := virt.LocalURI(uri, "inject writes the images of this host's VMs")
	if err != nil {
		return nil, err
	}
	uri = u.String()
	l, err := virt.Dial(ctx, u)
	if err != nil {
		if err == ctx.Err() {
			return nil, err // abandoned
		}
		return nil, fmt.Errorf("connecting to %s: %w", uri, err)
	}
	return &hypervisor{l: l, uri: uri}, nil
}

func (h *hypervisor) close() {
	if h != nil && h.l != nil {
		h.l.Disconnect()
	}
}

// lookupDomain finds a domain by name or UUID.
func (h *hypervisor) lookupDomain(name string) (libvirt.Domain, error) {
	if u, ok := virt.ParseUUID(name); ok {
		if d, err := h.l.DomainLookupByUUID(u); err == nil {
			return d, nil
		}
	}
	d, err := h.l.DomainLookupByName(name)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return d, notFoundErr{fmt.Errorf("domain %q: no such domain on %s", name, h.uri)}
		}
		return d, fmt.Errorf("domain %q: %w", name, err)
	}
	return d, nil
}

// checkShutOff refuses a domain that is not shut off, or that has a
// managed save image (its saved memory expects the disks unchanged).
func (h *hypervisor) checkShutOff(dom libvirt.Domain) error {
	st, _, err := h.l.DomainGetState(dom, 0)
	if err != nil {
		return fmt.Errorf("domain %s: %w", dom.Name, err)
	}
	if s := libvirt.DomainState(st); s != libvirt.DomainShutoff {
		return refusef("domain %s is %s; shut it down first (inject writes only into the disks of a VM that is shut off)", dom.Name, virt.StateName(s))
	}
	ms, err := h.l.DomainHasManagedSaveImage(dom, 0)
	if err != nil {
		return fmt.Errorf("domain %s: %w", dom.Name, err)
	}
	if ms != 0 {
		return refusef("domain %s has a managed save image: its saved memory expects the disks as they are; start and shut it down, or discard the state with `virsh managedsave-remove %s`", dom.Name, dom.Name)
	}
	return nil
}

// domainDisks lists a domain's disk images from its XML, with the disks it
// skips and why.
func (h *hypervisor) domainDisks(dom libvirt.Domain) ([]disk, []string, error) {
	x, err := h.l.DomainGetXMLDesc(dom, libvirt.DomainXMLInactive)
	if err != nil {
		return nil, nil, fmt.Errorf("domain %s: %w", dom.Name, err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return nil, nil, fmt.Errorf("domain %s: XML: %w", dom.Name, err)
	}
	var disks []disk
	var skipped []string
	if d.Devices == nil {
		return nil, nil, nil
	}
	for _, dd := range d.Devices.Disks {
		name := "?"
		if dd.Target != nil {
			name = dd.Target.Dev
		}
		if dd.Device != "" && dd.Device != "disk" {
			continue // cdrom, floppy, lun
		}
		p := ""
		switch {
		case dd.Source != nil && dd.Source.File != nil:
			p = dd.Source.File.File
		case dd.Source != nil && dd.Source.Block != nil:
			p = dd.Source.Block.Dev
		default:
			skipped = append(skipped, name+": not a file or block device (network or pool volume)")
			continue
		}
		format := ""
		if dd.Driver != nil {
			format = dd.Driver.Type
		}
		disks = append(disks, disk{name: name, path: p, format: format})
	}
	return disks, skipped, nil
}

// usersOf returns the running domains (other than skip) that use any of
// the files, by the identity of their disk sources.
func (h *hypervisor) usersOf(paths []string, skip string) ([]string, error) {
	doms, _, err := h.l.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
	if err != nil {
		return nil, err
	}
	var ids []os.FileInfo
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			ids = append(ids, st)
		}
	}
	var out []string
	for _, dom := range doms {
		if dom.Name == skip {
			continue
		}
		x, err := h.l.DomainGetXMLDesc(dom, 0)
		if err != nil {
			continue // it may have stopped meanwhile
		}
		var d libvirtxml.Domain
		if d.Unmarshal(x) != nil || d.Devices == nil {
			continue
		}
		for _, dd := range d.Devices.Disks {
			for _, p := range diskPaths(&dd) {
				st, err := os.Stat(p)
				if err != nil {
					continue
				}
				for _, id := range ids {
					if os.SameFile(st, id) {
						out = append(out, dom.Name)
					}
				}
			}
		}
	}
	return out, nil
}

// diskPaths lists the files a disk uses: its source and, in the live XML
// of a running domain, its backing chain (QEMU reads those too).
func diskPaths(dd *libvirtxml.DomainDisk) []string {
	var out []string
	add := func(src *libvirtxml.DomainDiskSource) {
		switch {
		case src == nil:
		case src.File != nil:
			out = append(out, src.File.File)
		case src.Block != nil:
			out = append(out, src.Block.Dev)
		}
	}
	add(dd.Source)
	for b, n := dd.BackingStore, 0; b != nil && n < 100; b, n = b.BackingStore, n+1 {
		add(b.Source)
	}
	return out
}

// checkNotUsed refuses images a running libvirt domain uses, when libvirtd
// can be reached (QEMU's image locks are checked anyway).
func checkNotUsed(ctx context.Context, h *hypervisor, uri string, paths []string, self string) error {
	if h == nil {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if h, err = dialLibvirt(c, uri); err != nil {
			return nil // no libvirtd here: the image locks are the guard
		}
		defer h.close()
	}
	users, err := h.usersOf(paths, self)
	if err != nil {
		return fmt.Errorf("listing running domains: %w", err)
	}
	if len(users) > 0 {
		return refusef("running domain %s uses the image; shut it down first", strings.Join(users, ", "))
	}
	return nil
}
