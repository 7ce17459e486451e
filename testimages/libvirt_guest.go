package testimages

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// GuestDomainPrefix starts the name of every domain the harness makes;
// scripts/libvirt-up.sh and -down.sh remove leftovers with that prefix.
const GuestDomainPrefix = "vmmount-test-"

// GuestAgentChannel is the virtio-serial port name of the QEMU guest agent.
const GuestAgentChannel = "org.qemu.guest_agent.0"

// GuestOptions describe a test guest domain.
type GuestOptions struct {
	// Name of the domain; default GuestDomainPrefix + the test name + a
	// random suffix, so parallel tests and packages never collide.
	Name string
	// Disk is the image attached as vda (virtio); required. The guest mounts
	// it at /mnt. DiskFormat is its format, "qcow2" by default.
	Disk       string
	DiskFormat string
	// Transient creates the domain without defining it; it disappears when
	// it stops. Default: defined (persistent), as real VMs are, which
	// checkpoints and offline backups need.
	Transient bool
	// MemoryMiB defaults to 128.
	MemoryMiB uint
	// NoAgent leaves out the guest agent channel.
	NoAgent bool
	// BootTimeout bounds the wait for GuestReadyMarker; default 90 s.
	BootTimeout time.Duration
	// Customize, if set, edits the domain before it is defined (extra disks,
	// another machine type, ...).
	Customize func(*libvirtxml.Domain)
}

// Guest is a test guest domain in the libvirtd of LibvirtConn.
type Guest struct {
	Conn        *libvirt.Libvirt
	Dom         libvirt.Domain
	Name        string
	ConsolePath string // the serial console (ttyS0) written to a file
	BootTimeout time.Duration
	agent       bool
	transient   bool // gone once shut off
}

// GuestVirtType is "kvm" when /dev/kvm is usable with hardware
// virtualization in /proc/cpuinfo, else "qemu" (TCG). Nested machines that
// expose /dev/kvm without vmx/svm hang or abort under kvm.
func GuestVirtType() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "qemu"
	}
	f.Close()
	cpu, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "qemu"
	}
	for _, line := range strings.Split(string(cpu), "\n") {
		if strings.HasPrefix(line, "flags") {
			for _, fl := range strings.Fields(line) {
				if fl == "vmx" || fl == "svm" {
					return "kvm"
				}
			}
			break
		}
	}
	return "qemu"
}

// GuestDomain returns the domain XML of a test guest: 1 vCPU, machine pc
// with ACPI, direct kernel boot of the guest assets, the disk as virtio vda,
// ttyS0 to a file, the guest agent channel, no balloon and no USB. Poweroff,
// reboot and crash all end in shut off.
func GuestDomain(a GuestAssets, name, consolePath string, o GuestOptions) *libvirtxml.Domain {
	format := o.DiskFormat
	if format == "" {
		format = "qcow2"
	}
	mem := o.MemoryMiB
	if mem == 0 {
		mem = 128
	}
	port := uint(0)
	d := &libvirtxml.Domain{
		Type:   GuestVirtType(),
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: mem, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			Kernel:  a.Kernel,
			Initrd:  a.Initrd,
			Cmdline: GuestKernelCmdline,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: o.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: consolePath}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if !o.NoAgent {
		d.Devices.Channels = []libvirtxml.DomainChannel{{
			Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
			Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: GuestAgentChannel}},
		}}
	}
	if o.Customize != nil {
		o.Customize(d)
	}
	return d
}

// DefineGuest defines (without starting) a persistent test guest. When the
// test ends, the domain is destroyed if running and undefined with its
// checkpoint, snapshot and NVRAM metadata; its console file lives in a
// t.TempDir().
func DefineGuest(t testing.TB, conn *libvirt.Libvirt, o GuestOptions) *Guest {
	t.Helper()
	if o.Transient {
		t.Fatal("DefineGuest: a transient guest cannot be defined; use StartGuest")
	}
	return newGuest(t, conn, o)
}

// StartGuest defines and starts a test guest (or creates it, if Transient)
// and waits until its console shows GuestReadyMarker and, unless NoAgent,
// the guest agent answers. Cleanup is as for DefineGuest.
func StartGuest(t testing.TB, conn *libvirt.Libvirt, o GuestOptions) *Guest {
	t.Helper()
	g := newGuest(t, conn, o)
	if !o.Transient {
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		return g
	}
	if err := g.waitBoot(); err != nil {
		t.Fatal(err)
	}
	return g
}

func newGuest(t testing.TB, conn *libvirt.Libvirt, o GuestOptions) *Guest {
	t.Helper()
	if o.Disk == "" {
		t.Fatal("GuestOptions.Disk is required")
	}
	a := GetGuestAssets(t)
	name := o.Name
	if name == "" {
		name = uniqueGuestName(t.Name())
	}
	g := &Guest{
		Conn:        conn,
		Name:        name,
		ConsolePath: filepath.Join(t.TempDir(), "console.log"),
		BootTimeout: o.BootTimeout,
		agent:       !o.NoAgent,
		transient:   o.Transient,
	}
	if g.BootTimeout == 0 {
		g.BootTimeout = 90 * time.Second
	}
	xml, err := GuestDomain(a, name, g.ConsolePath, o).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if o.Transient {
		g.Dom, err = conn.DomainCreateXML(xml, 0)
	} else {
		g.Dom, err = conn.DomainDefineXMLFlags(xml, libvirt.DomainDefineValidate)
	}
	if err != nil {
		t.Fatalf("defining guest %s: %v", name, err)
	}
	t.Cleanup(func() { g.remove(t, !o.Transient) })
	return g
}

// remove destroys the guest and, if persistent, undefines it with its
// checkpoint, snapshot and NVRAM metadata. The QEMU log libvirt keeps per
// domain name is removed too, unless the test failed.
func (g *Guest) remove(t testing.TB, undefine bool) {
	if err := g.Destroy(); err != nil && !libvirt.IsNotFound(err) {
		t.Errorf("destroying guest %s: %v", g.Name, err)
	}
	if undefine {
		err := g.Conn.DomainUndefineFlags(g.Dom, libvirt.DomainUndefineManagedSave|
			libvirt.DomainUndefineSnapshotsMetadata|libvirt.DomainUndefineNvram|
			libvirt.DomainUndefineCheckpointsMetadata)
		if err != nil && !libvirt.IsNotFound(err) {
			t.Errorf("undefining guest %s: %v", g.Name, err)
		}
	}
	qemuLog := filepath.Join("/var/log/libvirt/qemu", g.Name+".log")
	if t.Failed() {
		t.Logf("guest %s: QEMU log kept in %s", g.Name, qemuLog)
		return
	}
	os.Remove(qemuLog)
}

// AdoptGuest wraps a domain that the code under test defined (a restored
// VM, say) so a test can start it, read its console and shut it down; the
// same cleanup as DefineGuest is registered. consolePath is where its
// serial console goes ("" if the test does not read it).
func AdoptGuest(t testing.TB, conn *libvirt.Libvirt, name, consolePath string) *Guest {
	t.Helper()
	dom, err := conn.DomainLookupByName(name)
	if err != nil {
		t.Fatalf("looking up domain %s: %v", name, err)
	}
	persistent, err := conn.DomainIsPersistent(dom)
	if err != nil {
		t.Fatalf("domain %s: %v", name, err)
	}
	g := &Guest{Conn: conn, Dom: dom, Name: name, ConsolePath: consolePath, BootTimeout: 90 * time.Second,
		agent: true, transient: persistent == 0}
	t.Cleanup(func() { g.remove(t, !g.transient) })
	return g
}

// uniqueGuestName makes GuestDomainPrefix + a shortened test name + 8 random
// hex digits, using only characters that are safe in paths and XML.
func uniqueGuestName(test string) string {
	var b strings.Builder
	for _, r := range test {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[:40]
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	return GuestDomainPrefix + s + "-" + hex.EncodeToString(rnd[:])
}

// Start starts the defined guest with a fresh console file (libvirt opens
// it in append mode) and waits for GuestReadyMarker and the agent, as
// StartGuest does. A guest that is not the test guest never prints the
// marker: start it with Conn.DomainCreate and use WaitConsole instead.
func (g *Guest) Start() error {
	if g.ConsolePath != "" {
		if err := os.Remove(g.ConsolePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := g.Conn.DomainCreate(g.Dom); err != nil {
		return fmt.Errorf("starting guest %s: %w", g.Name, err)
	}
	return g.waitBoot()
}

func (g *Guest) waitBoot() error {
	if err := g.WaitConsole(GuestReadyMarker, g.BootTimeout); err != nil {
		return err
	}
	if !g.agent || strings.Contains(g.Console(), GuestReadyMarker+" agent=no") {
		return nil
	}
	return g.waitAgent(30 * time.Second)
}

// WaitAgent waits for the guest agent after something other than Start
// (a backup's guard, say) started the guest again.
func (g *Guest) WaitAgent(timeout time.Duration) error { return g.waitAgent(timeout) }

// waitAgent waits until libvirt reports the agent channel connected (the
// guest opened its end) and the agent answers a guest-ping, so the test's
// first agent command (fsfreeze) does not race the agent's start. libvirt
// gives each command's guest-sync only a few seconds, which a guest starved
// of CPU under TCG can miss right after boot.
func (g *Guest) waitAgent(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := g.waitAgentConnected(deadline); err != nil {
		return err
	}
	for {
		_, err := g.Conn.QEMUDomainAgentCommand(g.Dom, `{"execute":"guest-ping"}`, 10, 0)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guest %s: agent does not answer guest-ping after %v: %w%s", g.Name, timeout, err, g.consoleTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (g *Guest) waitAgentConnected(deadline time.Time) error {
	for {
		xml, err := g.Conn.DomainGetXMLDesc(g.Dom, 0)
		if err != nil {
			return fmt.Errorf("guest %s: %w", g.Name, err)
		}
		var d libvirtxml.Domain
		if err := d.Unmarshal(xml); err != nil {
			return fmt.Errorf("guest %s: live XML: %w", g.Name, err)
		}
		for _, c := range d.Devices.Channels {
			if c.Target != nil && c.Target.VirtIO != nil && c.Target.VirtIO.Name == GuestAgentChannel &&
				c.Target.VirtIO.State == "connected" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guest %s: agent channel not connected%s", g.Name, g.consoleTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Console returns what the guest printed on its serial console since it
// was last started.
func (g *Guest) Console() string {
	if g.ConsolePath == "" {
		return ""
	}
	b, _ := os.ReadFile(g.ConsolePath)
	return string(b)
}

func (g *Guest) consoleTail() string {
	c := g.Console()
	if len(c) > 3000 {
		c = "..." + c[len(c)-3000:]
	}
	return "; console:\n" + c
}

// State returns the domain's state; a transient guest that no longer
// exists is shut off.
func (g *Guest) State() (libvirt.DomainState, error) {
	st, _, err := g.Conn.DomainGetState(g.Dom, 0)
	if err != nil && g.transient && libvirt.IsNotFound(err) {
		return libvirt.DomainShutoff, nil
	}
	return libvirt.DomainState(st), err
}

// WaitConsole waits until the console shows substr. It fails early when the
// domain stops running, and at the timeout; the error carries the console.
func (g *Guest) WaitConsole(substr string, timeout time.Duration) error {
	if g.ConsolePath == "" {
		return fmt.Errorf("guest %s has no console file", g.Name)
	}
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(g.ConsolePath)
		if bytes.Contains(b, []byte(substr)) {
			return nil
		}
		st, err := g.State()
		if err != nil {
			return fmt.Errorf("guest %s: waiting for %q on the console: %w", g.Name, substr, err)
		}
		if st != libvirt.DomainRunning {
			// Read once more: the line may have come just before it stopped.
			if b, _ := os.ReadFile(g.ConsolePath); bytes.Contains(b, []byte(substr)) {
				return nil
			}
			return fmt.Errorf("guest %s stopped (state %d) before its console showed %q%s", g.Name, st, substr, g.consoleTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guest %s: console did not show %q within %v%s", g.Name, substr, timeout, g.consoleTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Shutdown presses the ACPI power button (again every 10 s, in case the
// guest was not listening yet) and waits until the domain is shut off. The
// guest's handler stops its worker and unmounts the disk first, so the
// filesystem is left clean.
func (g *Guest) Shutdown(ctx context.Context) error {
	var pressed time.Time
	for {
		st, err := g.State()
		if err != nil {
			return fmt.Errorf("guest %s: %w", g.Name, err)
		}
		if st == libvirt.DomainShutoff {
			return nil
		}
		if time.Since(pressed) > 10*time.Second {
			if err := g.Conn.DomainShutdownFlags(g.Dom, libvirt.DomainShutdownAcpiPowerBtn); err != nil {
				if st, serr := g.State(); serr == nil && st == libvirt.DomainShutoff {
					return nil // it stopped between the two calls
				}
				return fmt.Errorf("guest %s: ACPI shutdown: %w", g.Name, err)
			}
			pressed = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("guest %s: not shut off: %w%s", g.Name, ctx.Err(), g.consoleTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Destroy powers the guest off at once if it runs (like pulling the plug).
func (g *Guest) Destroy() error {
	st, err := g.State()
	if err != nil {
		return err
	}
	if st == libvirt.DomainShutoff {
		return nil
	}
	err = g.Conn.DomainDestroy(g.Dom)
	if err != nil {
		if st, serr := g.State(); serr == nil && st == libvirt.DomainShutoff {
			return nil
		}
	}
	return err
}
