package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/internal/virt"
	"github.com/vmmount/vmmount/testimages"
)

// The libvirt test driver (test:///default, through the daemon) keeps
// domain state in libvirtd without running anything: good for the
// lifecycle around a capture (suspend, freeze, shutdown, start) and its
// cleanup when the backup job, which the driver does not do, fails.

const testURI = "test:///default"

// testDomain defines and starts a test-driver domain whose disk vda is a
// real image (the offline path reads it), removed when the test ends.
func testDomain(t *testing.T) (*libvirt.Libvirt, libvirt.Domain, string) {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.LibvirtConn(t) // starts libvirtd if needed
	u, _ := url.Parse(testURI)
	l, err := libvirt.ConnectToURI(u)
	if err != nil {
		testimages.Missing(t, "libvirt test driver: %v", err)
	}
	t.Cleanup(func() { l.Disconnect() })
	img := filepath.Join(t.TempDir(), "disk.raw")
	f, _ := os.Create(img)
	f.WriteAt([]byte(strings.Repeat("vmmount lifecycle ", 1000)), 1<<20)
	f.Truncate(8 << 20)
	f.Close()
	var rnd [4]byte
	rand.Read(rnd[:])
	name := testimages.GuestDomainPrefix + "td-" + hex.EncodeToString(rnd[:])
	x := `<domain type='test'><name>` + name + `</name><memory>131072</memory><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='` + img + `'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>`
	d, err := l.DomainDefineXMLFlags(x, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DomainCreate(d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.DomainDestroy(d)
		l.DomainUndefineFlags(d, libvirt.DomainUndefineCheckpointsMetadata|libvirt.DomainUndefineSnapshotsMetadata)
	})
	return l, d, img
}

func domState(t *testing.T, l *libvirt.Libvirt, d libvirt.Domain) libvirt.DomainState {
	t.Helper()
	st, _, err := l.DomainGetState(d, 0)
	if err != nil {
		t.Fatal(err)
	}
	return libvirt.DomainState(st)
}

// notFrozen checks that the filesystems are thawed: a freeze freezes some
// (the driver answers 0 when they are frozen already); it is undone.
func notFrozen(t *testing.T, l *libvirt.Libvirt, d libvirt.Domain) {
	t.Helper()
	n, err := l.DomainFsfreeze(d, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.DomainFsthaw(d, nil, 0)
	if n == 0 {
		t.Errorf("filesystems were left frozen")
	}
}

func noLeftovers(t *testing.T, r *repo.Repo, vm string, scratch string) {
	t.Helper()
	ents, _ := os.ReadDir(r.VMDir(vm))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".partial-") {
			t.Errorf("partial point left: %s", e.Name())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(scratch, scratchDirPrefix+"*")); len(left) > 0 {
		t.Errorf("scratch directories left: %v", left)
	}
}

func TestLifecycleFailedJobUndoes(t *testing.T) {
	l, d, _ := testDomain(t)
	scratch := t.TempDir()
	for _, mode := range []string{ModeSnapshot, ModePause} {
		t.Run(mode, func(t *testing.T) {
			r := newRepo(t)
			_, err := Run(context.Background(), r, &Domain{URI: testURI, Name: d.Name, Mode: mode, ScratchDir: scratch}, Options{})
			if err == nil || !strings.Contains(err.Error(), "starting the backup job") {
				t.Fatalf("backup on the test driver: %v, want the job refused", err)
			}
			if st := domState(t, l, d); st != libvirt.DomainRunning {
				t.Errorf("state %d after the failed %s backup, want running", st, mode)
			}
			notFrozen(t, l, d)
			noLeftovers(t, r, d.Name, scratch)
			if cps, _, _ := l.DomainListAllCheckpoints(d, -1, 0); len(cps) != 0 {
				t.Errorf("checkpoints left: %v", cps)
			}
		})
	}
}

func TestLifecycleOffline(t *testing.T) {
	l, d, img := testDomain(t)
	r := newRepo(t)
	ctx := context.Background()
	opts := Options{Now: testClock()}
	_, err := Run(ctx, r, &Domain{URI: testURI, Name: d.Name, Mode: ModeOffline}, opts)
	if !errors.Is(err, ErrVMState) {
		t.Fatalf("offline backup of a running VM without --shutdown: %v", err)
	}
	var msgs []string
	res, err := Run(ctx, r, &Domain{URI: testURI, Name: d.Name, Mode: ModeOffline, Shutdown: true,
		Notify: func(m string) { msgs = append(msgs, m) }}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := domState(t, l, d); st != libvirt.DomainRunning {
		t.Errorf("state %d after an offline backup with shutdown, want running again", st)
	}
	m := res.Point.Manifest
	if m.Mode != repo.ModeOffline || len(m.Disks) != 1 || m.Disks[0].Target != "vda" || m.Config.DomainXML != "domain.xml" {
		t.Errorf("manifest %+v", m)
	}
	if !strings.Contains(strings.Join(m.Warnings, "\n"), "skipped disk hdc: a cdrom") {
		t.Errorf("the cdrom was not reported skipped: %q", m.Warnings)
	}
	if len(msgs) == 0 || !strings.Contains(msgs[0], "shutting") {
		t.Errorf("notifications %q", msgs)
	}
	qemuCompare(t, res.Point.Path("vda.qcow2"), img)

	// Shut off: an offline backup whatever the mode asked, by UUID.
	if err := l.DomainDestroy(d); err != nil {
		t.Fatal(err)
	}
	res, err = Run(ctx, r, &Domain{URI: testURI, Name: virt.FormatUUID(d.UUID), Mode: ModeSnapshot}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Point.Manifest.Mode != repo.ModeOffline || res.Point.Manifest.Parent == "" {
		t.Errorf("shut-off VM: mode %s parent %q", res.Point.Manifest.Mode, res.Point.Manifest.Parent)
	}
	if st := domState(t, l, d); st != libvirt.DomainShutoff {
		t.Errorf("a shut-off VM was started: state %d", st)
	}
	// A disk that does not exist, and one that cannot be backed up.
	for _, disks := range [][]string{{"vdz"}, {"hdc"}} {
		if _, err := Run(ctx, r, &Domain{URI: testURI, Name: d.Name, Disks: disks}, opts); err == nil {
			t.Errorf("disks %v: no error", disks)
		}
	}
	if _, err := Run(ctx, r, &Domain{URI: testURI, Name: "no-such-domain-here"}, opts); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing domain: %v", err)
	}
}
