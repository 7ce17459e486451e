package restore

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/digitalocean/go-libvirt"
)

// DefaultURI is the hypervisor configurations are defined in.
const DefaultURI = "qemu:///system"

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
	type result struct {
		l   *libvirt.Libvirt
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := libvirt.ConnectToURI(u)
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", uri, r.err)
		}
		return r.l, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				r.l.Disconnect()
			}
		}()
		return nil, ctx.Err()
	}
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
	if u, ok := parseUUID(uuid); ok {
		if err := add(l.DomainLookupByUUID(u)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	var hex []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	if len(hex) != 32 {
		return u, false
	}
	for i := range u {
		var b byte
		if _, err := fmt.Sscanf(string(hex[2*i:2*i+2]), "%02x", &b); err != nil {
			return u, false
		}
		u[i] = b
	}
	return u, true
}

func stateName(s libvirt.DomainState) string {
	switch s {
	case libvirt.DomainRunning:
		return "running"
	case libvirt.DomainBlocked:
		return "blocked"
	case libvirt.DomainPaused:
		return "paused"
	case libvirt.DomainShutdown:
		return "shutting down"
	case libvirt.DomainShutoff:
		return "shut off"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "suspended"
	}
	return fmt.Sprintf("state %d", s)
}

// undefineFlags remove a replaced domain's definition with the metadata
// of its snapshots and checkpoints (which describe the disks being
// replaced) but keep its NVRAM file: the restore writes that itself.
const undefineFlags = libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata |
	libvirt.DomainUndefineCheckpointsMetadata | libvirt.DomainUndefineKeepNvram
