// Package virt holds the small libvirt helpers that backup, restore and
// inject share: dialing a URI without hanging past a context, domain UUIDs
// and state names for messages.
package virt

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// DefaultURI is the libvirt connection used unless told otherwise.
const DefaultURI = "qemu:///system"

// Dial connects to u. A libvirtd that does not answer is abandoned when
// ctx ends (the connection, if it comes later, is closed).
func Dial(ctx context.Context, u *url.URL) (*libvirt.Libvirt, error) {
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
		return r.l, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				r.l.Disconnect()
			}
		}()
		return nil, ctx.Err()
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// ParseUUID reads a domain UUID, with or without its dashes.
func ParseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	if !uuidRE.MatchString(s) {
		return u, false
	}
	h := strings.ReplaceAll(s, "-", "")
	for i := range u {
		fmt.Sscanf(h[2*i:2*i+2], "%02x", &u[i])
	}
	return u, true
}

// FormatUUID writes a domain UUID the way libvirt does.
func FormatUUID(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// StateName names a domain state for messages ("running", "shut off").
func StateName(s libvirt.DomainState) string {
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
		return "suspended by the guest"
	}
	return fmt.Sprintf("in state %d", s)
}

// LocalURI parses uri ("" for DefaultURI), which must name this host's
// hypervisor (no host, no remote transport): the caller reads or writes
// its disks here. why says so in the error.
func LocalURI(uri, why string) (*url.URL, error) {
	if uri == "" {
		uri = DefaultURI
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", uri, err)
	}
	if u.Host != "" || strings.Contains(u.Scheme, "+") && !strings.HasSuffix(u.Scheme, "+unix") {
		return nil, fmt.Errorf("libvirt URI %q: %s; use a local URI such as qemu:///system", uri, why)
	}
	return u, nil
}

// NVRAMPath is the file holding a domain's UEFI variables, "" if none.
func NVRAMPath(os *libvirtxml.DomainOS) string {
	if os == nil || os.NVRam == nil {
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
