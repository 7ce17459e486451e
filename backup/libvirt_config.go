package backup

import (
	"context"
	"fmt"
	"os"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/internal/virt"
)

// Names of the configuration files in a point.
const (
	nvramFile  = "nvram.fd"
	kernelFile = "vmlinuz"
	initrdFile = "initrd.img"
)

// saveDomainConfig writes the domain XML (the persistent definition with
// its secrets when the domain is defined, else the live one), and the
// NVRAM and direct-boot kernel and initrd it uses, into dir.
func (s *Domain) saveDomainConfig(ctx context.Context, dir string) (repo.Config, error) {
	var c repo.Config
	var persistent int32
	if err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		persistent, err = l.DomainIsPersistent(s.dom)
		return err
	}); err != nil {
		return c, s.vmErr(err)
	}
	flags := libvirt.DomainXMLSecure
	if persistent == 1 {
		flags |= libvirt.DomainXMLInactive
	}
	x, d, err := s.domainXML(ctx, flags)
	if err != nil {
		return c, err
	}
	if err := saveFile(dir, domainXMLFile, []byte(x), &c); err != nil {
		return c, err
	}
	c.DomainXML = domainXMLFile
	if d.OS == nil {
		return c, nil
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
		b, err := os.ReadFile(f.path)
		if err != nil {
			return c, fmt.Errorf("domain %s uses %s: %w", s.vm.Name, f.path, err)
		}
		if err := saveFile(dir, f.name, b, &c); err != nil {
			return c, err
		}
		*f.field = f.name
	}
	return c, nil
}
