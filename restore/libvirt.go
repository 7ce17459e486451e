package restore

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/internal/virt"
)

// DefaultURI is the hypervisor configurations are defined in.
const DefaultURI = virt.DefaultURI

// ErrDomainExists marks a domain in the way of a restore (refused unless
// replacing a shut-off one). It wraps ErrExists.
var ErrDomainExists = fmt.Errorf("domain %w", ErrExists)

// ErrDomainActive marks a domain that would be replaced but is running.
var ErrDomainActive = errors.New("domain is not shut off")

// Connect opens a connection to the libvirt daemon at uri ("" for
// DefaultURI): qemu:///system, test:///default, qemu+unix:///system?socket=...
func Connect(ctx context.Context, uri string) (*libvirt.Libvirt, error) {
	if uri == "" {
		uri = DefaultURI
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", uri, err)
	}
	l, err := virt.Dial(ctx, u)
	if err != nil {
		if err == ctx.Err() {
			return nil, err // abandoned
		}
		return nil, fmt.Errorf("connecting to %s: %w", uri, err)
	}
	return l, nil
}

// existingDomain is a defined or running domain a restore meets.
type existingDomain struct {
	dom   libvirt.Domain
	state libvirt.DomainState
	xml   string // its persistent definition, to put back on failure
}

// findDomain looks a domain up by name and by UUID and returns those that
// exist (one, or two different ones).
func findDomain(l *libvirt.Libvirt, name, uuid string) ([]*existingDomain, error) {
	var out []*existingDomain
	add := func(d libvirt.Domain, err error) error {
		if err != nil {
			if libvirt.IsNotFound(err) {
				return nil
			}
			return err
		}
		for _, e := range out {
			if e.dom.UUID == d.UUID {
				return nil
			}
		}
		st, _, err := l.DomainGetState(d, 0)
		if err != nil {
			return err
		}
		x, err := l.DomainGetXMLDesc(d, libvirt.DomainXMLInactive|libvirt.DomainXMLSecure)
		if err != nil {
			return err
		}
		out = append(out, &existingDomain{dom: d, state: libvirt.DomainState(st), xml: x})
		return nil
	}
	if err := add(l.DomainLookupByName(name)); err != nil {
		return nil, err
	}
	if u, ok := virt.ParseUUID(uuid); ok {
		if err := add(l.DomainLookupByUUID(u)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// undefineFlags remove a replaced domain's definition with the metadata
// of its snapshots and checkpoints (which describe the disks being
// replaced) but keep its NVRAM file: the restore writes that itself.
const undefineFlags = libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata |
	libvirt.DomainUndefineCheckpointsMetadata | libvirt.DomainUndefineKeepNvram
