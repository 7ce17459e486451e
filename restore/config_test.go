package restore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
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

// TestRestoreVMFiles: the NVRAM and a direct-boot kernel saved with a
// point go into DIR with the disks for a copy (the XML edited to match),
// and back to their own paths for a disaster recovery.
func TestRestoreVMFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("needs libvirtd")
	}
	testimages.RequireRoot(t)
	conn := testimages.LibvirtConn(t)
	r, ref, orig := configPoint(t)
	pt, err := r.Point(ref)
	if err != nil {
		t.Fatal(err)
	}
	// Give the saved configuration an NVRAM and a kernel, as a backup of
	// a UEFI or direct-boot domain has.
	hostDir := t.TempDir()
	nvram, kernel := filepath.Join(hostDir, "web_VARS.fd"), filepath.Join(hostDir, "vmlinuz")
	orig.OS.Loader = &libvirtxml.DomainLoader{Path: "/usr/share/OVMF/OVMF_CODE.fd", Readonly: "yes", Type: "pflash"}
	orig.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: nvram}
	orig.OS.Kernel = kernel
	x, _ := orig.Marshal()
	m := pt.Manifest
	m.Config.Files = map[string]string{}
	for name, content := range map[string]string{"domain.xml": x, "nvram.fd": "NVRAM VARS", "vmlinuz": "a kernel"} {
		os.WriteFile(pt.Path(name), []byte(content), 0o644)
		m.Config.Files[name] = fmt.Sprintf("%x", sha256.Sum256([]byte(content)))
	}
	m.Config.DomainXML, m.Config.NVRAM, m.Config.Kernel = "domain.xml", "nvram.fd", "vmlinuz"
	mb, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(pt.Path(repo.ManifestFile), mb, 0o644)

	ctx := context.Background()
	p, err := OpenPoint(ctx, r, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	vr, err := RestoreVM(ctx, p, VMOptions{Conn: conn, NewIdentity: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{filepath.Join(dir, vr.Name+"_VARS.fd"): "NVRAM VARS", filepath.Join(dir, vr.Name+"-vmlinuz"): "a kernel"}
	for f, c := range want {
		if b, err := os.ReadFile(f); err != nil || string(b) != c {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
	var d libvirtxml.Domain
	b, _ := os.ReadFile(vr.XMLFile)
	d.Unmarshal(string(b))
	if d.OS.NVRam.NVRam != vr.NVRAM || d.OS.Kernel != vr.Kernel || vr.NVRAM != filepath.Join(dir, vr.Name+"_VARS.fd") || d.Name != orig.Name+"-"+p.Point.ID {
		t.Errorf("copy's XML: nvram %s kernel %s name %s; result %+v", d.OS.NVRam.NVRam, d.OS.Kernel, d.Name, vr)
	}

	// Disaster recovery: the files go back where they were (the disk
	// file exists: refused without --replace).
	if _, err := RestoreVM(ctx, p, VMOptions{Conn: conn}); !errors.Is(err, ErrExists) {
		t.Errorf("disaster recovery over an existing disk file: %v, want ErrExists", err)
	}
	if _, err := os.Stat(nvram); err == nil {
		t.Errorf("refused restore wrote %s", nvram)
	}
	vr, err = RestoreVM(ctx, p, VMOptions{Conn: conn, Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if vr.NVRAM != nvram || vr.Kernel != kernel || vr.Name != orig.Name || vr.UUID != orig.UUID {
		t.Errorf("disaster recovery: %+v", vr)
	}
	if b, _ := os.ReadFile(nvram); string(b) != "NVRAM VARS" {
		t.Errorf("NVRAM: %q", b)
	}
}
