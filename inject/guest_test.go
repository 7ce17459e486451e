package inject

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// TestGuestEndToEnd injects a file and an autorun script into the qcow2
// disk of a stopped libvirt domain (with a restore point first), boots it
// and reads the guest printing the file on its console. While it runs,
// injection is refused; after it ran, undoing is refused (the guest
// changed the filesystem).
func TestGuestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testimages.RequireRoot(t)
	conn := testimages.LibvirtConn(t)
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{})
	g := testimages.DefineGuest(t, conn, testimages.GuestOptions{Disk: disk.Path})
	ctx := context.Background()

	src := t.TempDir()
	conf := filepath.Join(src, "injected.conf")
	if err := os.WriteFile(conf, []byte("secret=42 from vmmount inject\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(src, "autorun.sh")
	if err := os.WriteFile(script, []byte("echo INJECTED-BEGIN\ncat /mnt/etc/vmmount/injected.conf\nls -ln /mnt/etc/vmmount\necho INJECTED-END\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := repo.OpenOrInit(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Options{Target: Target{Domain: g.Name}, Sources: []string{conf}, GuestDir: "/fs/etc/vmmount",
		Parents: true, Owner: &Owner{Uid: 33, Gid: 44}, Repo: r, Tool: "vmmount test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.RestorePoint == "" || !strings.HasPrefix(res.UndoFile, disk.Path+".inject-") {
		t.Errorf("result %+v", res)
	}
	res2, err := Run(ctx, Options{Target: Target{Domain: g.Name}, Sources: []string{script}, GuestDir: "/fs"})
	if err != nil {
		t.Fatal(err)
	}
	if points, _, err := r.Points(g.Name); err != nil || len(points) != 1 {
		t.Errorf("restore points of %s: %d, %v", g.Name, len(points), err)
	}

	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitConsole("INJECTED-END", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	console := g.Console()
	t.Logf("console:\n%s", console[strings.Index(console, "INJECTED-BEGIN"):])
	if !strings.Contains(console, "secret=42 from vmmount inject") || !strings.Contains(console, " 33 ") {
		t.Errorf("the guest did not print the injected file with its owner; console:\n%s", console)
	}

	_, err = Run(ctx, Options{Target: Target{Domain: g.Name}, Sources: []string{conf}, GuestDir: "/fs", Overwrite: true})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "running") {
		t.Errorf("injecting into a running domain: %v, want refused", err)
	}
	_, err = Run(ctx, Options{Target: Target{Images: []string{disk.Path}}, Sources: []string{conf}, GuestDir: "/fs", Overwrite: true})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("injecting into the image of a running domain: %v, want refused", err)
	}
	if _, err := Undo(ctx, res2.UndoFile, UndoOptions{}); !errors.Is(err, ErrRefused) {
		t.Errorf("undo while the domain runs: %v, want refused", err)
	}

	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Undo(ctx, res2.UndoFile, UndoOptions{}); !errors.Is(err, ErrChanged) {
		t.Errorf("undo after the guest ran: %v, want ErrChanged", err)
	}
}
