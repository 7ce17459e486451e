package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/internal/virt"
)

// Backup modes of a domain (Domain.Mode).
const (
	ModeAuto     = ""         // offline if shut off, else snapshot
	ModeOffline  = "offline"  // the VM must be shut off (or --shutdown)
	ModePause    = "pause"    // suspend, copy, resume
	ModeSnapshot = "snapshot" // freeze, start a point-in-time copy, thaw
)

// DefaultShutdownTimeout bounds the wait for an ACPI shutdown.
const DefaultShutdownTimeout = 5 * time.Minute

// Domain is a Source: a libvirt domain of this host.
type Domain struct {
	// URI of the hypervisor; "" means DefaultURI.
	URI string
	// Name or UUID of the domain.
	Name string
	// Mode is one of the Mode* constants.
	Mode string
	// Disks picks disks by target (vda, sdb); empty means every disk that
	// can be captured.
	Disks []string
	// Shutdown lets an offline backup of a running VM shut it down (ACPI
	// power button), wait up to ShutdownTimeout, and start it again after.
	Shutdown        bool
	ShutdownTimeout time.Duration
	// RequireQuiesce fails a snapshot backup when the guest agent cannot
	// freeze the filesystems, instead of continuing crash-consistent.
	RequireQuiesce bool
	// ScratchDir is where live backups keep the NBD socket and QEMU's
	// scratch files; "" means DefaultScratchDir. QEMU must be able to
	// create files there.
	ScratchDir string
	// Notify, if set, receives progress messages as the capture goes
	// (waiting for shutdown, frozen, thawed); the library prints nothing.
	Notify func(msg string)

	h     *hypervisor
	dom   libvirt.Domain
	vm    repo.VMInfo
	state libvirt.DomainState
}

// Open connects to the hypervisor and finds the domain. Close releases
// the connection.
func (s *Domain) Open(ctx context.Context) (repo.VMInfo, error) {
	if s.h != nil {
		return s.vm, nil
	}
	h, err := connectLibvirt(ctx, s.URI)
	if err != nil {
		return s.vm, err
	}
	var dom libvirt.Domain
	err = h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		if u, ok := virt.ParseUUID(s.Name); ok {
			dom, err = l.DomainLookupByUUID(u)
		} else {
			dom, err = l.DomainLookupByName(s.Name)
		}
		return err
	})
	if err != nil {
		h.close()
		if libvirt.IsNotFound(err) {
			return s.vm, fmt.Errorf("domain %q: %w", s.Name, ErrNoDomain)
		}
		return s.vm, fmt.Errorf("domain %q: %w", s.Name, err)
	}
	if err := repo.CheckVMName(dom.Name); err != nil {
		h.close()
		return s.vm, err
	}
	s.h, s.dom = h, dom
	s.vm = repo.VMInfo{Name: dom.Name, UUID: virt.FormatUUID(dom.UUID)}
	return s.vm, nil
}

// Close drops the connection.
func (s *Domain) Close() {
	if s.h != nil {
		s.h.close()
		s.h = nil
	}
}

func (s *Domain) notify(format string, args ...any) {
	if s.Notify != nil {
		s.Notify(fmt.Sprintf(format, args...))
	}
}

// Begin picks the mode from the domain's state and starts the capture.
func (s *Domain) Begin(ctx context.Context, req CaptureRequest) (Session, error) {
	if _, err := s.Open(ctx); err != nil {
		return nil, err
	}
	// What a killed backup left (frozen, paused, shut down, a job) is
	// put right first, so the state read next is the VM's own.
	healed, err := s.recoverLeftovers(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		st, _, err := l.DomainGetState(s.dom, 0)
		s.state = libvirt.DomainState(st)
		return err
	}); err != nil {
		return nil, s.vmErr(err)
	}
	mode := s.Mode
	switch s.state {
	case libvirt.DomainShutoff:
		if mode == ModePause || mode == ModeSnapshot {
			s.notify("%s is shut off: backing it up offline", s.vm.Name)
		}
		return s.beginOffline(ctx, req, false, healed)
	case libvirt.DomainRunning, libvirt.DomainPaused:
	default:
		return nil, fmt.Errorf("%w: %s is %s", ErrVMState, s.vm.Name, virt.StateName(s.state))
	}
	switch mode {
	case ModeOffline:
		if !s.Shutdown {
			return nil, fmt.Errorf("%w: %s is %s; an offline backup needs it shut off (--shutdown shuts it down and starts it again)", ErrVMState, s.vm.Name, virt.StateName(s.state))
		}
		return s.beginOffline(ctx, req, true, healed)
	case ModePause, ModeSnapshot, ModeAuto:
		if mode == ModeAuto {
			mode = ModeSnapshot
		}
		return s.beginPull(ctx, req, mode, healed)
	}
	return nil, fmt.Errorf("backup mode %q: want offline, pause or snapshot", mode)
}

// vmErr names a failed libvirt call after the VM.
func (s *Domain) vmErr(err error) error {
	if libvirt.IsNotFound(err) {
		return fmt.Errorf("domain %s vanished: %w", s.vm.Name, ErrNoDomain)
	}
	return fmt.Errorf("domain %s: %w", s.vm.Name, err)
}

// domainXML reads and parses the domain's XML with flags.
func (s *Domain) domainXML(ctx context.Context, flags libvirt.DomainXMLFlags) (string, *libvirtxml.Domain, error) {
	var x string
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		x, err = l.DomainGetXMLDesc(s.dom, flags)
		return err
	})
	if err != nil {
		return "", nil, s.vmErr(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return "", nil, fmt.Errorf("domain %s: parsing its XML: %w", s.vm.Name, err)
	}
	return x, &d, nil
}

// domainDisk is a disk picked for backup.
type domainDisk struct {
	target string
	source string // path, volume "pool/vol" or network name
	file   string // host path for offline reading ("" if none)
	format string // driver type
	xml    *libvirtxml.DomainDisk
}

// pickDisks chooses the disks to capture from the domain's XML and says
// which were skipped and why. offline needs a host path for each.
func (s *Domain) pickDisks(ctx context.Context, d *libvirtxml.Domain, offline bool) ([]*domainDisk, []string, error) {
	var out []*domainDisk
	var skipped []string
	want := map[string]bool{}
	for _, t := range s.Disks {
		want[t] = true
	}
	found := map[string]bool{}
	if d.Devices == nil {
		return nil, nil, ErrNoDisks
	}
	for i := range d.Devices.Disks {
		x := &d.Devices.Disks[i]
		if x.Target == nil || x.Target.Dev == "" {
			continue
		}
		t := x.Target.Dev
		found[t] = true
		if len(want) > 0 && !want[t] {
			continue
		}
		why := ""
		switch {
		case x.Device == "lun":
			why = "a pass-through LUN"
		case x.Device == "cdrom" || x.Device == "floppy":
			why = "a " + x.Device
		case x.Shareable != nil:
			why = "shareable"
		case x.Transient != nil:
			why = "transient"
		case x.Source == nil || (x.Source.File == nil && x.Source.Block == nil && x.Source.Volume == nil && x.Source.Network == nil):
			why = "of a source type vmmount does not capture"
		}
		dd := &domainDisk{target: t, xml: x}
		if x.Driver != nil {
			dd.format = x.Driver.Type
		}
		if why == "" {
			switch src := x.Source; {
			case src.File != nil:
				dd.source, dd.file = src.File.File, src.File.File
			case src.Block != nil:
				dd.source, dd.file = src.Block.Dev, src.Block.Dev
			case src.Volume != nil:
				dd.source = src.Volume.Pool + "/" + src.Volume.Volume
				if offline {
					p, err := s.volumePath(ctx, src.Volume.Pool, src.Volume.Volume)
					if err != nil {
						return nil, nil, fmt.Errorf("disk %s: %w", t, err)
					}
					dd.file = p
				}
			case src.Network != nil:
				dd.source = src.Network.Protocol + ":" + src.Network.Name
				if offline {
					why = "a network disk (" + dd.source + "), which an offline backup cannot read; back it up while the VM runs"
				}
			}
			if why == "" && dd.source == "" {
				why = "without a source"
			}
		}
		if why != "" {
			if want[t] {
				return nil, nil, fmt.Errorf("disk %s is %s: it cannot be backed up", t, why)
			}
			skipped = append(skipped, fmt.Sprintf("skipped disk %s: %s", t, why))
			continue
		}
		if repo.CheckVMName(t) != nil {
			return nil, nil, fmt.Errorf("disk target %q is not a usable name", t)
		}
		out = append(out, dd)
	}
	for t := range want {
		if !found[t] {
			return nil, nil, fmt.Errorf("%s has no disk %s", s.vm.Name, t)
		}
	}
	if len(out) == 0 {
		return nil, skipped, fmt.Errorf("%w: %s (%s)", ErrNoDisks, s.vm.Name, strings.Join(skipped, "; "))
	}
	slices.SortFunc(out, func(a, b *domainDisk) int { return strings.Compare(a.target, b.target) })
	return out, skipped, nil
}

func (s *Domain) volumePath(ctx context.Context, pool, vol string) (string, error) {
	var p string
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		sp, err := l.StoragePoolLookupByName(pool)
		if err != nil {
			return err
		}
		v, err := l.StorageVolLookupByName(sp, vol)
		if err != nil {
			return err
		}
		p, err = l.StorageVolGetPath(v)
		return err
	})
	return p, err
}
