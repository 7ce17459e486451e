package restore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/internal/virt"
)

// DomainXML returns the libvirt domain XML saved with the point, checked
// against its digest. A point of plain image files has none (an error
// wrapping fs.ErrNotExist).
func (p *Point) DomainXML() (string, *libvirtxml.Domain, error) {
	name := p.Point.Manifest.Config.DomainXML
	if name == "" {
		return "", nil, fmt.Errorf("point %s holds no VM configuration (a backup of image files): %w", p.Point.Ref(), fs.ErrNotExist)
	}
	b, err := p.ConfigFile(name)
	if err != nil {
		return "", nil, err
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(b)); err != nil {
		return "", nil, fmt.Errorf("point %s: domain XML: %w", p.Point.Ref(), err)
	}
	return string(b), &d, nil
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewMAC returns a random MAC address in the range libvirt and QEMU use
// for generated ones (52:54:00, locally administered).
func NewMAC() string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

// Renamed edits d, in place, into a copy of the VM under a new identity:
// name, a new UUID (also in SMBIOS system info where it was the old one),
// new MAC addresses, automatic graphics ports, channel socket paths left
// for libvirt to generate, and serial and console log files renamed into
// dir (their own directory if dir is ""). Disks and NVRAM are placed by
// the caller.
func Renamed(d *libvirtxml.Domain, name, dir string) {
	oldName, oldUUID := d.Name, d.UUID
	d.Name, d.UUID = name, NewUUID()
	d.ID = nil
	d.Title = ""
	for i := range d.SysInfo {
		if s := d.SysInfo[i].SMBIOS; s != nil && s.System != nil {
			for j := range s.System.Entry {
				if e := &s.System.Entry[j]; e.Name == "uuid" && strings.EqualFold(e.Value, oldUUID) {
					e.Value = d.UUID
				}
			}
		}
	}
	ResetGenID(d)
	if d.Devices == nil {
		return
	}
	for i := range d.Devices.Interfaces {
		in := &d.Devices.Interfaces[i]
		in.MAC = &libvirtxml.DomainInterfaceMAC{Address: NewMAC()}
		in.Target = nil // tap device names (vnet0) are the running domain's
	}
	for i := range d.Devices.Graphics {
		g := &d.Devices.Graphics[i]
		if g.VNC != nil && g.VNC.Socket == "" {
			g.VNC.Port, g.VNC.AutoPort, g.VNC.WebSocket = -1, "yes", 0
		}
		if g.Spice != nil {
			g.Spice.Port, g.Spice.TLSPort, g.Spice.AutoPort = -1, -1, "yes"
		}
	}
	for i := range d.Devices.Channels {
		if s := d.Devices.Channels[i].Source; s != nil && s.UNIX != nil && strings.Contains(s.UNIX.Path, oldName) {
			s.UNIX.Path = ""
		}
	}
	rename := func(p string) string {
		d := dir
		if d == "" {
			d = filepath.Dir(p)
		}
		return filepath.Join(d, name+"-"+filepath.Base(p))
	}
	move := func(s *libvirtxml.DomainChardevSource, log *libvirtxml.DomainChardevLog) {
		if s != nil && s.File != nil && s.File.Path != "" {
			s.File.Path = rename(s.File.Path)
		}
		if log != nil && log.File != "" {
			log.File = rename(log.File)
		}
	}
	for i := range d.Devices.Serials {
		move(d.Devices.Serials[i].Source, d.Devices.Serials[i].Log)
	}
	for i := range d.Devices.Consoles {
		move(d.Devices.Consoles[i].Source, d.Devices.Consoles[i].Log)
	}
}

// ResetGenID asks libvirt for a new VM generation ID when the domain has
// one: the guest (Windows, notably Active Directory) learns from it that
// it was restored from a backup and must not reuse what it handed out
// since (libvirt formatdomain "General metadata", genid).
func ResetGenID(d *libvirtxml.Domain) {
	if d.GenID != nil {
		d.GenID = &libvirtxml.DomainGenID{}
	}
}

// ConfigOptions control a configuration restore.
type ConfigOptions struct {
	// Conn is needed to Define.
	Conn *libvirt.Libvirt
	// Name, when not the original's, makes a copy under a new identity
	// (Renamed). Its disks stay those of the configuration: the copy
	// shares them with the original until they are changed.
	Name   string
	Define bool
	// Replace allows a shut-off domain of the same name or UUID to be
	// replaced by Define.
	Replace bool
}

// ConfigResult is a restored configuration.
type ConfigResult struct {
	Name     string   `json:"name"`
	UUID     string   `json:"uuid"`
	Defined  bool     `json:"defined"`
	Replaced []string `json:"replaced,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	XML      string   `json:"-"`
}

// RestoreConfig returns the point's domain XML, as saved or renamed, and
// defines it on request: refused while a domain of that name or UUID
// exists, unless Replace and it is shut off.
func RestoreConfig(ctx context.Context, p *Point, o ConfigOptions) (*ConfigResult, error) {
	saved, dom, err := p.DomainXML()
	if err != nil {
		return nil, err
	}
	res := &ConfigResult{XML: saved}
	if o.Name != "" && o.Name != dom.Name {
		if !plainName(o.Name) {
			return nil, fmt.Errorf("domain name %q: not a plain name", o.Name)
		}
		Renamed(dom, o.Name, "")
		if dom.Devices != nil && len(dom.Devices.Disks) > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s uses the same disk files as %s; do not start both (restore vm --name makes a copy with its own disks)", o.Name, p.Point.VM))
		}
		if res.XML, err = dom.Marshal(); err != nil {
			return nil, err
		}
	}
	res.Name, res.UUID = dom.Name, dom.UUID
	if !o.Define {
		return res, nil
	}
	if o.Conn == nil {
		return nil, errors.New("defining needs a libvirt connection")
	}
	existing, err := findDomain(o.Conn, dom.Name, dom.UUID)
	if err != nil {
		return nil, err
	}
	for _, e := range existing {
		what := fmt.Sprintf("%s (%s, %s)", e.dom.Name, virt.FormatUUID(e.dom.UUID), virt.StateName(e.state))
		if !o.Replace {
			return nil, fmt.Errorf("%w: %s", ErrDomainExists, what)
		}
		if e.state != libvirt.DomainShutoff {
			return nil, fmt.Errorf("%w: %s; shut it down first", ErrDomainActive, what)
		}
		res.Replaced = append(res.Replaced, e.dom.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := defineReplacing(o.Conn, existing, res.XML); err != nil {
		return nil, err
	}
	res.Defined = true
	return res, nil
}
