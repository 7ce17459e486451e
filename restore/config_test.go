package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// configPoint backs up a small disk image with a domain XML beside it
// (backup.Images with Config) and returns the repository, the ref and
// the domain as saved.
func configPoint(t *testing.T) (*repo.Repo, string, *libvirtxml.Domain) {
	t.Helper()
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{SizeMiB: 16})
	name := fmt.Sprintf("%scfg-%s", testimages.GuestDomainPrefix, NewUUID()[:8])
	port := uint(0)
	d := &libvirtxml.Domain{
		Type: "qemu", Name: name, UUID: NewUUID(),
		Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"}},
		GenID:  &libvirtxml.DomainGenID{Value: "43dc0cf8-809b-4adb-9bea-a9abb5f3d90d"},
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk.Path}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Interfaces: []libvirtxml.DomainInterface{{
				Source: &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}},
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: "52:54:00:aa:bb:cc"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: filepath.Join(filepath.Dir(disk.Path), "console.log")}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
		},
	}
	x, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	xf := filepath.Join(t.TempDir(), "domain.xml")
	os.WriteFile(xf, []byte(x), 0o644)
	r, err := repo.OpenOrInit(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(context.Background(), r, &backup.Images{Name: name, UUID: d.UUID, Config: xf,
		Disks: []backup.ImageDisk{{Target: "vda", Path: disk.Path}}}, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r, res.Point.Ref(), d
}

func TestRestoreConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("needs libvirtd")
	}
	testimages.RequireRoot(t)
	conn := testimages.LibvirtConn(t)
	r, ref, orig := configPoint(t)
	ctx := context.Background()
	p, err := OpenPoint(ctx, r, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	res, err := RestoreConfig(ctx, p, ConfigOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got libvirtxml.Domain
	if err := got.Unmarshal(res.XML); err != nil || got.UUID != orig.UUID || got.Name != orig.Name {
		t.Errorf("config as saved: %v %s %s", err, got.Name, got.UUID)
	}

	newName := orig.Name + "-new"
	res, err = RestoreConfig(ctx, p, ConfigOptions{Conn: conn, Name: newName, Define: true})
	if err != nil {
		t.Fatal(err)
	}
	defer undefine(t, conn, newName)
	got = libvirtxml.Domain{}
	got.Unmarshal(res.XML)
	if got.Name != newName || got.UUID == orig.UUID || got.Devices.Interfaces[0].MAC.Address == "52:54:00:aa:bb:cc" ||
		got.GenID == nil || got.GenID.Value != "" || len(res.Warnings) == 0 {
		t.Errorf("renamed config: name %s uuid %s mac %s genid %+v warnings %q", got.Name, got.UUID,
			got.Devices.Interfaces[0].MAC.Address, got.GenID, res.Warnings)
	}
	if !strings.HasSuffix(got.Devices.Serials[0].Source.File.Path, newName+"-console.log") {
		t.Errorf("console log of the copy: %s", got.Devices.Serials[0].Source.File.Path)
	}
	if _, err := RestoreConfig(ctx, p, ConfigOptions{Conn: conn, Name: newName, Define: true}); !errors.Is(err, ErrDomainExists) {
		t.Errorf("defining over an existing domain: %v, want ErrDomainExists", err)
	}
	if _, err := RestoreConfig(ctx, p, ConfigOptions{Conn: conn, Name: newName, Define: true, Replace: true}); err != nil {
		t.Errorf("replacing a shut-off domain: %v", err)
	}

	// A whole VM without --define: disks and the XML file in DIR.
	dir := t.TempDir()
	vr, err := RestoreVM(ctx, p, VMOptions{Conn: conn, Name: orig.Name + "-vm", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if vr.Defined || vr.XMLFile != filepath.Join(dir, orig.Name+"-vm.xml") {
		t.Errorf("restore vm without --define: %+v", vr)
	}
	if _, err := conn.DomainLookupByName(orig.Name + "-vm"); !libvirt.IsNotFound(err) {
		t.Errorf("domain defined without --define: %v", err)
	}
	for _, f := range []string{vr.XMLFile, vr.Disks[0].Path} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	// Again: every target exists, refused before writing.
	if _, err := RestoreVM(ctx, p, VMOptions{Conn: conn, Name: orig.Name + "-vm", Dir: dir}); !errors.Is(err, ErrExists) {
		t.Errorf("second restore into the same files: %v, want ErrExists", err)
	}
}

func undefine(t *testing.T, conn *libvirt.Libvirt, name string) {
	if d, err := conn.DomainLookupByName(name); err == nil {
		conn.DomainUndefineFlags(d, undefineFlags)
	}
}
