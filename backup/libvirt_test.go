package backup

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// liveGuest starts the test guest (qcow2 disk, agent, a counter written
// every second) and waits for its first counter values.
func liveGuest(t *testing.T, o testimages.GuestOptions) (*testimages.Guest, testimages.GuestDisk) {
	return liveGuestDisk(t, o, testimages.GuestDiskOptions{})
}

func liveGuestDisk(t *testing.T, o testimages.GuestOptions, do testimages.GuestDiskOptions) (*testimages.Guest, testimages.GuestDisk) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a guest; skipped with -short")
	}
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "e2fsck", "losetup", "mount")
	conn := testimages.LibvirtConn(t)
	disk := testimages.NewGuestDisk(t, do)
	o.Disk = disk.Path
	g := testimages.StartGuest(t, conn, o)
	if err := g.WaitConsole("vmmount-guest: counter 2", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	return g, disk
}

// checkPointFiles checks a point's image with qemu-img check, e2fsck -fn
// (when clean is set) and a loop mount: the guest's initial files are
// there and its counter is a number of at least minCounter. It returns the
// counter.
func checkPointFiles(t *testing.T, p *repo.Point, disk testimages.GuestDisk, clean bool, minCounter int) int {
	t.Helper()
	img := p.Path("vda.qcow2")
	qemuCheck(t, img)
	names := []string{"counter", "hello.txt", "data/random.bin", "etc/hostname"}
	var got map[string]string
	if clean {
		got = readGuestFiles(t, img, names...)
	} else {
		got = readGuestFilesDirty(t, img, names...)
	}
	for _, n := range names[1:] {
		if got[n] != disk.Files["/"+n] {
			t.Errorf("point %s: %s: %d bytes differ from the %d the guest had", p.Ref(), n, len(got[n]), len(disk.Files["/"+n]))
		}
	}
	c, err := strconv.Atoi(strings.TrimSpace(got["counter"]))
	if err != nil || c < minCounter {
		t.Errorf("point %s: counter %q, want a number >= %d", p.Ref(), got["counter"], minCounter)
	}
	return c
}

func vmmountCheckpoints(t *testing.T, g *testimages.Guest) []string {
	t.Helper()
	cps, _, err := g.Conn.DomainListAllCheckpoints(g.Dom, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cps {
		if strings.HasPrefix(c.Name, checkpointPrefix) {
			out = append(out, c.Name)
		}
	}
	return out
}

// TestLibvirtModes runs every mode against one live guest, each point an
// incremental of the one before: snapshot (frozen) full, snapshot
// incremental by checkpoint, pause incremental by checkpoint, snapshot
// after the checkpoint was lost (hash comparison), offline with
// --shutdown (hash comparison), then prune with merge.
func TestLibvirtModes(t *testing.T) {
	g, disk := liveGuest(t, testimages.GuestOptions{})
	r := newRepo(t)
	ctx := context.Background()
	opts := Options{Tool: "vmmount test", Now: testClock()}
	var points []*repo.Point
	backup := func(d *Domain) *repo.Point {
		t.Helper()
		res, err := Run(ctx, r, d, opts)
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		if st, _ := g.State(); st != libvirt.DomainRunning {
			t.Fatalf("guest state %d after the backup, want running", st)
		}
		p := res.Point
		if len(points) > 0 && p.Manifest.Parent != points[len(points)-1].ID {
			t.Errorf("point %s: parent %q, want %s", p.ID, p.Manifest.Parent, points[len(points)-1].ID)
		}
		points = append(points, p)
		t.Logf("point %s: mode %s, %s, changes %s, %d bytes changed, pause %d ms, freeze %d ms, took %d ms, warnings %q",
			p.ID, p.Manifest.Mode, p.Manifest.Consistency, p.Manifest.Disks[0].Changes, p.Manifest.Disks[0].ChangedBytes,
			p.Manifest.PauseMS, p.Manifest.FreezeMS, p.Manifest.DurationMS, p.Manifest.Warnings)
		return p
	}

	p := backup(&Domain{Name: g.Name})
	m := p.Manifest
	if m.Mode != repo.ModeSnapshot || m.Consistency != repo.ConsistencyFrozen || m.FreezeMS <= 0 || m.Disks[0].Changes != repo.ChangesFull || m.Disks[0].Checkpoint != "vmmount-"+p.ID {
		t.Errorf("snapshot full: %+v", m)
	}
	if m.Config.DomainXML != "domain.xml" || m.Config.Kernel == "" || m.Config.Initrd == "" || m.VM.UUID == "" {
		t.Errorf("config not saved: %+v, vm %+v", m.Config, m.VM)
	}
	c1 := checkPointFiles(t, p, disk, true, 1)

	g.WaitConsole("vmmount-guest: counter "+strconv.Itoa(c1+2), 30*time.Second)
	p = backup(&Domain{Name: g.Name, Mode: ModeSnapshot})
	if d := p.Manifest.Disks[0]; d.Changes != repo.ChangesCheckpoint || d.ChangedBytes <= 0 || d.ChangedBytes > 4<<20 {
		t.Errorf("snapshot incremental: changes %s, %d bytes", d.Changes, d.ChangedBytes)
	}
	c2 := checkPointFiles(t, p, disk, true, c1+1)
	if cps := vmmountCheckpoints(t, g); len(cps) != 1 || cps[0] != "vmmount-"+p.ID {
		t.Errorf("checkpoints after the second point: %v", cps)
	}

	g.WaitConsole("vmmount-guest: counter "+strconv.Itoa(c2+2), 30*time.Second)
	// This one lets libvirt create the scratch file, as it does where a
	// disk's size cannot be had beforehand.
	preCreateScratch = false
	p = backup(&Domain{Name: g.Name, Mode: ModePause})
	preCreateScratch = true
	if m := p.Manifest; m.Mode != repo.ModePause || m.Consistency != repo.ConsistencyPaused || m.PauseMS <= 0 || m.Disks[0].Changes != repo.ChangesCheckpoint {
		t.Errorf("pause: %+v", m)
	}
	// Paused is crash-consistent: what the journal had committed (the
	// freeze of the point before committed c2).
	c3 := max(checkPointFiles(t, p, disk, false, c2), c2)

	// The checkpoint is lost (the VM redefined, say): hash comparison.
	for _, name := range vmmountCheckpoints(t, g) {
		cp, _ := g.Conn.DomainCheckpointLookupByName(g.Dom, name, 0)
		if err := g.Conn.DomainCheckpointDelete(cp, 0); err != nil {
			t.Fatal(err)
		}
	}
	g.WaitConsole("vmmount-guest: counter "+strconv.Itoa(c3+2), 30*time.Second)
	p = backup(&Domain{Name: g.Name})
	if d := p.Manifest.Disks[0]; d.Changes != repo.ChangesHashes || d.ChangedBytes <= 0 || d.ChangedBytes > 4<<20 {
		t.Errorf("after a lost checkpoint: changes %s, %d bytes", d.Changes, d.ChangedBytes)
	}
	c4 := checkPointFiles(t, p, disk, true, c3+1)

	// Offline refuses a running VM, then shuts it down and restarts it.
	if _, err := Run(ctx, r, &Domain{Name: g.Name, Mode: ModeOffline}, opts); err == nil || !strings.Contains(err.Error(), "--shutdown") {
		t.Fatalf("offline backup of a running VM: %v", err)
	}
	p = backup(&Domain{Name: g.Name, Mode: ModeOffline, Shutdown: true, ShutdownTimeout: time.Minute})
	if m := p.Manifest; m.Mode != repo.ModeOffline || m.Consistency != repo.ConsistencyOffline || m.Disks[0].Changes != repo.ChangesHashes {
		t.Errorf("offline: %+v", m)
	}
	checkPointFiles(t, p, disk, true, c4)
	if err := g.WaitConsole(testimages.GuestReadyMarker, 60*time.Second); err != nil {
		t.Fatalf("the guest did not come back after the offline backup: %v", err)
	}
	for _, p := range points {
		qemuCheck(t, p.Path("vda.qcow2"))
	}
	// The direct-boot kernel and initrd never changed: every point shares
	// the first point's files.
	for _, name := range []string{kernelFile, initrdFile} {
		first, err := os.Stat(points[0].Path(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range points[1:] {
			if st, err := os.Stat(p.Path(name)); err != nil || !os.SameFile(first, st) {
				t.Errorf("point %s: %s is not the first point's file (%v)", p.ID, name, err)
			}
		}
	}

	// Prune to the last two: the three points under them are merged in.
	pres, err := Prune(ctx, r, g.Name, repo.Policy{Last: 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pres.Merges) != 3 {
		t.Errorf("merges %+v", pres.Merges)
	}
	kept, _, _ := r.Points(g.Name)
	if len(kept) != 2 || kept[0].ID != points[3].ID || kept[0].Manifest.Parent != "" || kept[1].Manifest.Parent != kept[0].ID {
		t.Fatalf("after prune: %v", kept)
	}
	checkPointFiles(t, kept[0], disk, true, c4)
	checkPointFiles(t, kept[1], disk, true, c4)
	reps, err := Verify(ctx, r, g.Name, nil, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rep := range reps {
		if !rep.OK {
			t.Errorf("%s after prune: %v", rep.Point, rep.Faults)
		}
	}
	// And the chain goes on.
	backup(&Domain{Name: g.Name})
}
