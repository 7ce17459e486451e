package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/mount"
	"github.com/vmmount/vmmount/testimages"
)

// backupImage makes a restore point of image in repository dir through
// the backup command (image-file source), as a user would.
func backupImage(t *testing.T, dir, vm, image string) {
	t.Helper()
	g := &globalOptions{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, Repo: dir, Quiet: true}
	o := &backupOptions{Name: vm, Disks: []string{"vda=" + image}, Format: "qcow2", MaxChain: 14}
	if err := runBackup(context.Background(), g, o, nil); err != nil {
		t.Fatalf("backup: %v", err)
	}
}

// TestMountRepository serves a repository: <vm>/<point>/<volume>/..., a
// latest link per VM, the manifest beside the disks; and one point by
// VM/latest with --repo.
func TestMountRepository(t *testing.T) {
	requireFUSE(t)
	x := testimages.GetExt(t, testimages.ExtVariants[2])
	want, err := x.Oracle()
	if err != nil {
		t.Fatal(err)
	}
	rdir := filepath.Join(t.TempDir(), "repo")
	backupImage(t, rdir, "web", x.Image)
	time.Sleep(1100 * time.Millisecond) // point ids have one-second resolution
	backupImage(t, rdir, "web", x.Image)
	r, err := repo.Open(rdir)
	if err != nil {
		t.Fatal(err)
	}
	points, _, err := r.Points("web")
	if err != nil || len(points) != 2 {
		t.Fatalf("points: %v %v", points, err)
	}

	g := &globalOptions{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, Repo: rdir}
	for _, c := range []struct {
		source string
		prefix string // path of the point's namespace inside the mount
	}{
		{rdir, "web/" + points[1].ID},
		{"web", points[0].ID},
		{"web/latest", ""},
	} {
		t.Run(strings.ReplaceAll(c.source, "/", "_"), func(t *testing.T) {
			dir := t.TempDir()
			src, err := openMountSource(context.Background(), g, []string{c.source}, "", dir)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := mount.Mount(dir, src.root, mount.Options{})
			if err != nil {
				src.Close()
				t.Fatal(err)
			}
			defer func() { srv.Unmount(); srv.Wait(); src.Close() }()
			pt := filepath.Join(dir, c.prefix)
			if _, err := os.Stat(filepath.Join(pt, repo.ManifestFile)); err != nil {
				t.Fatalf("no manifest beside the disks: %v", err)
			}
			got, err := testimages.ScanDir(filepath.Join(pt, "fs"))
			if err != nil {
				t.Fatal(err)
			}
			if diffs := testimages.Compare(want, got, testimages.ExtCompare()); len(diffs) > 0 {
				t.Errorf("point differs from the image's oracle:\n%s", strings.Join(diffs, "\n"))
			}
			if c.source == rdir {
				if tgt, err := os.Readlink(filepath.Join(dir, "web", "latest")); err != nil || tgt != points[1].ID {
					t.Errorf("web/latest -> %q %v, want %s", tgt, err, points[1].ID)
				}
				if _, err := os.Stat(filepath.Join(dir, "web", "latest", "fs", "big")); err != nil {
					t.Errorf("through latest: %v", err)
				}
			}
		})
	}
}

// TestMountAsUser mounts as an unprivileged user, which goes through
// fusermount3 (the direct mount needs root), and unmounts with
// `vmmount umount`.
func TestMountAsUser(t *testing.T) {
	requireFUSE(t)
	testimages.RequireTools(t, "fusermount3", "setpriv")
	if fi, err := os.Stat("/dev/fuse"); err != nil || fi.Mode().Perm()&0o006 != 0o006 {
		testimages.Missing(t, "/dev/fuse is not open to users (scripts/setup.sh gives it Debian's mode 0666)")
	}
	bin := vmmountBinary(t)
	x := testimages.GetExt(t, testimages.ExtVariants[2])
	const uid = 65534 // nobody
	work, err := os.MkdirTemp("", "vmmount-user-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755)
	img := filepath.Join(work, "disk.img")
	testimages.MustRun(t, "cp", "--sparse=always", x.Image, img)
	// The test binary's own directory is root's and closed to others.
	userBin := filepath.Join(work, "vmmount")
	testimages.MustRun(t, "cp", bin, userBin)
	os.Chmod(userBin, 0o755)
	mnt := filepath.Join(work, "mnt")
	os.Mkdir(mnt, 0o755)
	for _, p := range []string{img, mnt} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	runAs := func(prog string, args ...string) *exec.Cmd {
		c := exec.Command("setpriv", append([]string{"--reuid", "65534", "--regid", "65534", "--clear-groups", prog}, args...)...)
		c.Env = append(os.Environ(), "HOME="+work)
		return c
	}
	asUser := func(args ...string) *exec.Cmd { return runAs(userBin, args...) }
	if out, err := asUser("mount", "--background", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount as user: %v: %s", err, out)
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	if !isMounted(mnt) {
		t.Fatal("not mounted")
	}
	// Without --allow-other only the user who mounted sees the files.
	if out, err := runAs("/usr/bin/stat", filepath.Join(mnt, "fs", "big")).CombinedOutput(); err != nil {
		t.Fatalf("through the user's mount: %v: %s", err, out)
	}
	if out, err := asUser("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount as user: %v: %s", err, out)
	}
	if isMounted(mnt) {
		t.Fatal("still mounted")
	}
}
