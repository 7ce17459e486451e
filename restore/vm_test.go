package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// stateScript makes the guest remember a token on its disk: the first
// boot writes a fresh one, every later boot (of a restored copy) prints
// the one it finds.
const stateScript = `if [ -f /mnt/state ]; then
	echo "SEEN-STATE: $(cat /mnt/state)"
else
	cat /proc/sys/kernel/random/uuid > /mnt/state
	sync
	echo "WROTE-STATE: $(cat /mnt/state)"
fi
`

var stateRe = regexp.MustCompile(`WROTE-STATE: ([0-9a-f-]{36})`)

// TestRestoreVM backs up a running guest through libvirt (a live snapshot
// backup), restores it under a new identity next to new disks, boots the
// copy and reads on its console that it sees the state the guest had
// written before the backup. Then it is disaster recovery: the original
// domain is undefined and its disk deleted, the VM is restored with its
// name, UUID, MAC address and disk path, and boots into the same state.
func TestRestoreVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testimages.RequireRoot(t)
	conn := testimages.LibvirtConn(t)
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{Autorun: stateScript})
	g := testimages.StartGuest(t, conn, testimages.GuestOptions{Disk: disk.Path, Customize: func(d *libvirtxml.Domain) {
		d.Devices.Interfaces = []libvirtxml.DomainInterface{{
			Source: &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}},
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: "52:54:00:12:34:56"},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}}
	}})
	if err := g.WaitConsole("WROTE-STATE: ", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	m := stateRe.FindStringSubmatch(g.Console())
	if m == nil {
		t.Fatalf("no state token on the console:\n%s", g.Console())
	}
	token := m[1]
	origXML, _ := conn.DomainGetXMLDesc(g.Dom, libvirt.DomainXMLInactive)
	var orig libvirtxml.Domain
	orig.Unmarshal(origXML)

	r, err := repo.OpenOrInit(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := backup.Run(ctx, r, &backup.Domain{Name: g.Name}, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := res.Point.Ref()
	t.Logf("backed up the running guest into %s (%s, %s)", ref, res.Point.Manifest.Mode, res.Point.Manifest.Consistency)
	p, err := OpenPoint(ctx, r, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Disaster recovery is refused while the domain exists, and replacing
	// it while it runs.
	if _, err := RestoreVM(ctx, p, VMOptions{Conn: conn, Define: true}); !errors.Is(err, ErrDomainExists) {
		t.Errorf("restore over an existing domain: %v, want ErrDomainExists", err)
	}
	if _, err := RestoreVM(ctx, p, VMOptions{Conn: conn, Define: true, Replace: true}); !errors.Is(err, ErrDomainActive) {
		t.Errorf("replacing a running domain: %v, want ErrDomainActive", err)
	}

	// Alternate location: a copy under a new identity, started.
	dir := t.TempDir()
	copyName := g.Name + "-copy"
	var steps []string
	vr, err := RestoreVM(ctx, p, VMOptions{Conn: conn, Name: copyName, Dir: dir, Start: true,
		Notify: func(s string) { steps = append(steps, s) }})
	var cg *testimages.Guest
	if vr != nil && vr.Defined {
		// The harness destroys and undefines it when the test ends.
		cg = testimages.AdoptGuest(t, conn, copyName, filepath.Join(dir, copyName+"-console.log"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steps: %q; warnings %q", steps, vr.Warnings)
	if err := cg.WaitConsole("SEEN-STATE: "+token, 90*time.Second); err != nil {
		t.Fatalf("the copy does not see the point's state: %v", err)
	}
	cx, _ := conn.DomainGetXMLDesc(cg.Dom, libvirt.DomainXMLInactive)
	var cd libvirtxml.Domain
	cd.Unmarshal(cx)
	if cd.UUID == orig.UUID || cd.Devices.Interfaces[0].MAC.Address == orig.Devices.Interfaces[0].MAC.Address {
		t.Errorf("copy kept the original's identity: uuid %s mac %s", cd.UUID, cd.Devices.Interfaces[0].MAC.Address)
	}
	if src := cd.Devices.Disks[0].Source.File.File; filepath.Dir(src) != dir {
		t.Errorf("copy's disk is %s, not in %s", src, dir)
	}
	if strings.Contains(g.Console(), "SEEN-STATE") {
		t.Errorf("the original guest saw a state it should have written")
	}

	// Disaster recovery of an undefined domain whose disk is gone.
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.DomainUndefineFlags(g.Dom, undefineFlags); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(disk.Path); err != nil {
		t.Fatal(err)
	}
	vr, err = RestoreVM(ctx, p, VMOptions{Conn: conn, Define: true})
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.DomainLookupByName(g.Name)
	if err != nil {
		t.Fatal(err)
	}
	g.Dom = dom // the harness undefines it when the test ends
	rx, _ := conn.DomainGetXMLDesc(dom, libvirt.DomainXMLInactive)
	var rd libvirtxml.Domain
	rd.Unmarshal(rx)
	if rd.UUID != orig.UUID || rd.Devices.Interfaces[0].MAC.Address != orig.Devices.Interfaces[0].MAC.Address ||
		rd.Devices.Disks[0].Source.File.File != disk.Path {
		t.Errorf("disaster recovery changed the identity: uuid %s (was %s), mac %s, disk %s",
			rd.UUID, orig.UUID, rd.Devices.Interfaces[0].MAC.Address, rd.Devices.Disks[0].Source.File.File)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitConsole("SEEN-STATE: "+token, 60*time.Second); err != nil {
		t.Fatalf("the recovered VM does not see the point's state: %v", err)
	}
	t.Logf("recovered %s: %+v", g.Name, vr.Disks[0])
}
