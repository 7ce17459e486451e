package guestcheck

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmount/vmmount/testimages"
)

// TestGuestBackupEndToEnd boots the test guest, freezes and thaws its
// filesystem through the agent, takes a push-mode backup with a checkpoint
// while frozen, checks the backup with qemu-img, e2fsck and a loop mount,
// and shuts the guest down by ACPI. It logs the time of each step.
func TestGuestBackupEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "e2fsck", "losetup", "mount")
	conn := testimages.LibvirtConn(t)
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{})

	start := time.Now()
	g := testimages.StartGuest(t, conn, testimages.GuestOptions{Disk: disk.Path})
	boot := time.Since(start)
	if !strings.Contains(g.Console(), testimages.GuestReadyMarker+" agent=yes") {
		t.Fatalf("guest booted without its agent; console:\n%s", g.Console())
	}
	// Let the guest's writer put a few counter values on the disk.
	if err := g.WaitConsole("vmmount-guest: counter 2", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	n, err := conn.DomainFsfreeze(g.Dom, nil, 0)
	if err != nil {
		t.Fatalf("fsfreeze: %v", err)
	}
	frozen := time.Since(start)
	if n < 1 {
		t.Fatalf("fsfreeze froze %d filesystems, want /mnt at least", n)
	}
	start = time.Now()
	if n, err := conn.DomainFsthaw(g.Dom, nil, 0); err != nil || n < 1 {
		t.Fatalf("fsthaw: thawed %d, %v", n, err)
	}
	thawed := time.Since(start)

	target := filepath.Join(t.TempDir(), "vda.backup.qcow2")
	backupXML, checkpointXML := pushBackupXML(t, "vda", target, "vmmount-guestcheck-1")
	start = time.Now()
	window, err := frozenBackupBegin(conn, g.Dom, backupXML, checkpointXML)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := waitJob(conn, g.Dom, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	backup := time.Since(start)
	if op := stats[libvirt.DomainJobOperationStr]; op != fmt.Sprint(int32(libvirt.DomainJobOperationStrBackup)) {
		t.Errorf("completed job operation %q, want backup (%d); stats %v", op, libvirt.DomainJobOperationStrBackup, stats)
	}
	if _, err := conn.DomainCheckpointLookupByName(g.Dom, "vmmount-guestcheck-1", 0); err != nil {
		t.Errorf("checkpoint after backup: %v", err)
	}

	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	shutdown := time.Since(start)
	if !strings.Contains(g.Console(), "vmmount-guest: powering off") {
		t.Errorf("guest did not run its power-button handler; console:\n%s", g.Console())
	}

	checkImage(t, "backup", target, disk.Files, true)
	checkImage(t, "guest disk after shutdown", disk.Path, disk.Files, false)

	t.Logf("fsfreeze froze %d filesystems", n)
	t.Logf("timings: boot %v, fsfreeze %v, fsthaw %v, backup (freeze+begin+thaw %v, job to completion) %v, ACPI shutdown %v",
		boot.Round(time.Millisecond), frozen.Round(time.Millisecond), thawed.Round(time.Millisecond),
		window.Round(time.Millisecond), backup.Round(time.Millisecond), shutdown.Round(time.Millisecond))
	t.Logf("backup job stats: %v", stats)
}

// pushBackupXML returns the <domainbackup> of a full push-mode backup of disk
// into a new qcow2 file, and a <domaincheckpoint> that starts tracking
// changes from this point (a persistent dirty bitmap in the disk image).
func pushBackupXML(t *testing.T, disk, target, checkpoint string) (string, string) {
	t.Helper()
	b := libvirtxml.DomainBackup{Push: &libvirtxml.DomainBackupPush{Disks: &libvirtxml.DomainBackupPushDisks{
		Disks: []libvirtxml.DomainBackupPushDisk{{
			Name:   disk,
			Backup: "yes",
			Driver: &libvirtxml.DomainBackupDiskDriver{Type: "qcow2"},
			Target: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: target}},
		}},
	}}}
	c := libvirtxml.DomainCheckpoint{Name: checkpoint, Disks: &libvirtxml.DomainCheckpointDisks{
		Disks: []libvirtxml.DomainCheckpointDisk{{Name: disk, Checkpoint: "bitmap"}},
	}}
	bx, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cx, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return bx, cx
}

// frozenBackupBegin freezes the guest's filesystems, starts the backup job
// (its point in time is the start) and thaws at once, even on failure. It
// returns how long the guest was frozen.
func frozenBackupBegin(conn *libvirt.Libvirt, dom libvirt.Domain, backupXML, checkpointXML string) (time.Duration, error) {
	start := time.Now()
	if _, err := conn.DomainFsfreeze(dom, nil, 0); err != nil {
		return 0, fmt.Errorf("fsfreeze: %w", err)
	}
	berr := conn.DomainBackupBegin(dom, backupXML, libvirt.OptString{checkpointXML}, 0)
	_, terr := conn.DomainFsthaw(dom, nil, 0)
	window := time.Since(start)
	if berr != nil {
		return window, fmt.Errorf("backup begin: %w", berr)
	}
	if terr != nil {
		return window, fmt.Errorf("fsthaw: %w", terr)
	}
	return window, nil
}

// waitJob polls the domain's job until none is active and returns the
// completed job's statistics as strings.
func waitJob(conn *libvirt.Libvirt, dom libvirt.Domain, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		typ, _, _, _, _, _, _, _, _, _, _, _, err := conn.DomainGetJobInfo(dom)
		if err != nil {
			return nil, fmt.Errorf("job info: %w", err)
		}
		if libvirt.DomainJobType(typ) == libvirt.DomainJobNone {
			break
		}
		if time.Now().After(deadline) {
			conn.DomainAbortJob(dom)
			return nil, fmt.Errorf("backup job still running after %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	typ, params, err := conn.DomainGetJobStats(dom, libvirt.DomainJobStatsCompleted)
	if err != nil {
		return nil, fmt.Errorf("completed job stats: %w", err)
	}
	stats := map[string]string{}
	for _, p := range params {
		stats[p.Field] = fmt.Sprint(p.Value.I)
	}
	if libvirt.DomainJobType(typ) != libvirt.DomainJobCompleted {
		return stats, fmt.Errorf("backup job ended as type %d, not completed; stats %v", typ, stats)
	}
	return stats, nil
}

// checkImage checks a qcow2 image of the guest disk with qemu-img check,
// e2fsck -fn and a read-only kernel loop mount of a raw copy: the guest's
// files are there with their content and, if counter, /counter holds a
// positive number.
func checkImage(t *testing.T, what, image string, files map[string]string, counter bool) {
	t.Helper()
	if _, err := testimages.Run("qemu-img", "check", "-q", image); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	raw := filepath.Join(t.TempDir(), "check.raw")
	testimages.MustRun(t, "qemu-img", "convert", "-O", "raw", image, raw)
	if out, err := testimages.Run("e2fsck", "-fn", raw); err != nil {
		t.Errorf("%s: filesystem not clean: %v\n%s", what, err, out)
	}
	dir, cleanup, err := testimages.LoopMount(raw, 0, 0, false, "ext4", "ro")
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer cleanup()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s: %s: %d bytes differ from the %d written", what, name, len(got), len(want))
		}
	}
	if counter {
		b, err := os.ReadFile(filepath.Join(dir, "counter"))
		if err != nil {
			t.Errorf("%s: the guest's counter: %v", what, err)
		} else if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n < 1 {
			t.Errorf("%s: counter %q, want a positive number", what, b)
		}
	}
}

// TestGuestAutorunTransient boots a transient guest whose disk carries
// /autorun.sh, which prints a file of the disk on the console, the way the
// restore and inject tests read what a guest sees; then pulls the plug.
func TestGuestAutorunTransient(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	testimages.RequireRoot(t)
	conn := testimages.LibvirtConn(t)
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{
		Format:  "raw",
		Files:   map[string]string{"/etc/injected.txt": "injected-content-4711\n"},
		Autorun: "echo \"autorun: $(cat /mnt/etc/injected.txt)\"\n",
	})
	g := testimages.StartGuest(t, conn, testimages.GuestOptions{
		Disk: disk.Path, DiskFormat: "raw", Transient: true, NoAgent: true,
	})
	if !strings.Contains(g.Console(), testimages.GuestReadyMarker+" agent=no") {
		t.Errorf("console does not say the agent is absent:\n%s", g.Console())
	}
	if err := g.WaitConsole("autorun: injected-content-4711", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.Destroy(); err != nil {
		t.Fatal(err)
	}
	if st, err := g.State(); err != nil || st != libvirt.DomainShutoff {
		t.Fatalf("transient guest after destroy: state %d, %v", st, err)
	}
}
