package backup

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/internal/virt"
)

// Names of the configuration files in a point.
const (
	nvramFile  = "nvram.fd"
	kernelFile = "vmlinuz"
	initrdFile = "initrd.img"
)

// saveDomainConfig saves the domain XML (the persistent definition with
// its secrets when the domain is defined, else the live one), and the
// NVRAM and direct-boot kernel and initrd it uses.
func (s *Domain) saveDomainConfig(ctx context.Context, out *configOut) error {
	c := &out.c
	var persistent int32
	if err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		persistent, err = l.DomainIsPersistent(s.dom)
		return err
	}); err != nil {
		return s.vmErr(err)
	}
	flags := libvirt.DomainXMLSecure
	if persistent == 1 {
		flags |= libvirt.DomainXMLInactive
	}
	x, d, err := s.domainXML(ctx, flags)
	if err != nil {
		return err
	}
	if err := out.bytes(domainXMLFile, []byte(x)); err != nil {
		return err
	}
	c.DomainXML = domainXMLFile
	if d.OS == nil {
		return nil
	}
	for _, f := range []struct {
		path, name string
		field      *string
	}{
		{virt.NVRAMPath(d.OS), nvramFile, &c.NVRAM},
		{d.OS.Kernel, kernelFile, &c.Kernel},
		{d.OS.Initrd, initrdFile, &c.Initrd},
	} {
		if f.path == "" {
			continue
		}
		if err := out.file(f.name, f.path); err != nil {
			return fmt.Errorf("domain %s uses %s: %w", s.vm.Name, f.path, err)
		}
		*f.field = f.name
	}
	return nil
}
