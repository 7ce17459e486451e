package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/mount"
	"github.com/vmmount/vmmount/testimages"
)

// requireFUSE skips (or fails under CI) without root and /dev/fuse.
func requireFUSE(t *testing.T) {
	t.Helper()
	testimages.RequireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testimages.Missing(t, "no /dev/fuse")
	}
}

// mountImages serves images in-process the way `vmmount mount` does and
// unmounts at the end of the test.
func mountImages(t *testing.T, images ...string) (string, *mountSource) {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	g := &globalOptions{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	src, err := openMountSource(context.Background(), g, images, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mount.Mount(dir, src.root, mount.Options{OnError: func(p string, err error) { t.Logf("mount reported %s: %v", p, err) }})
	if err != nil {
		src.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
		src.Close()
	})
	return dir, src
}

// checkMountEqualsReader compares every readable volume seen through the
// mount with the same volume read by fsread directly (its oracle, itself
// checked against the kernel / ntfs-3g / the source tree by fsread's tests).
func checkMountEqualsReader(t *testing.T, images ...string) {
	t.Helper()
	dir, _ := mountImages(t, images...)
	s, err := openImageSetWith(context.Background(), images, "", fsread.Options{MountRoot: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	for _, v := range s.set.Volumes() {
		f, err := v.FS()
		if err != nil {
			// An unreadable volume shows its error file instead.
			b, rerr := os.ReadFile(filepath.Join(dir, v.Path, mount.ErrorFileName))
			if rerr != nil || !strings.Contains(string(b), "vmmount could not open volume") {
				t.Errorf("%s: unreadable (%v) but error file: %q %v", v.Path, err, b, rerr)
			}
			continue
		}
		n++
		want, err := testimages.ScanFS(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := testimages.ScanDir(filepath.Join(dir, v.Path))
		if err != nil {
			t.Fatal(err)
		}
		o := testimages.CompareOptions{Fields: testimages.AllFields &^ testimages.FieldBlocks}
		if v.FSType == "vfat" {
			// The kernel's vfat-style nlink of directories is
			// computed by the kernel from the subdirectories through
			// FUSE as well; owners and times are synthetic anyway.
			o.Fields &^= testimages.FieldNlink
		}
		if diffs := testimages.Compare(want, got, o); len(diffs) > 0 {
			t.Errorf("%s (%s): mount differs from fsread (-reader +mount):\n%s", v.Path, v.FSType, strings.Join(diffs, "\n"))
		}
		// The raw bytes of the volume are served too.
		if r := v.ReaderAt(); r != nil {
			st, err := os.Stat(filepath.Join(dir, filepath.Dir(v.Path), mount.RawDirName, v.Name))
			if err != nil || st.Size() != v.Size {
				t.Errorf("%s: raw file: %v %v", v.Path, st, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no readable volume")
	}
}

func TestMountExtVariants(t *testing.T) {
	requireFUSE(t)
	for _, v := range testimages.ExtVariants {
		t.Run(v.Name, func(t *testing.T) {
			x := testimages.GetExt(t, v)
			checkMountEqualsReader(t, x.Image)
		})
	}
}

func TestMountNTFSAndFAT(t *testing.T) {
	requireFUSE(t)
	for _, v := range testimages.NTFSVariants {
		t.Run(v.Name, func(t *testing.T) { checkMountEqualsReader(t, testimages.GetNTFS(t, v).Image) })
	}
	for _, v := range testimages.FATVariants {
		t.Run(v.Name, func(t *testing.T) { checkMountEqualsReader(t, testimages.GetFAT(t, v).Image) })
	}
}

func TestMountDisks(t *testing.T) {
	requireFUSE(t)
	for _, name := range []string{"gpt", "mbr", "lvm"} {
		t.Run(name, func(t *testing.T) {
			d := testimages.GetDisk(t, name)
			checkMountEqualsReader(t, d.Images...)
			if len(d.Images) > 1 {
				// Several disks: /<disk>/<volume>, each disk's bytes.
				dir, _ := mountImages(t, d.Images...)
				for _, img := range d.Images {
					st, err := os.Stat(filepath.Join(dir, fsread.DiskName(img), mount.RawDirName, "disk"))
					if err != nil {
						t.Fatal(err)
					}
					hst, _ := os.Stat(img)
					if st.Size() != hst.Size() {
						t.Errorf("%s: raw disk is %d bytes, image %d", img, st.Size(), hst.Size())
					}
				}
			}
		})
	}
}

// TestMountCorruptVolume: a volume whose filesystem cannot be opened shows
// its error, a corrupt file is EIO for that file only, and the rest of the
// mount keeps working.
func TestMountCorruptVolume(t *testing.T) {
	requireFUSE(t)
	d := testimages.GetDisk(t, "gpt")
	img := filepath.Join(t.TempDir(), "disk.img")
	testimages.MustRun(t, "cp", "--sparse=always", d.Images[0], img)
	s, err := openImageSet(context.Background(), []string{img}, "")
	if err != nil {
		t.Fatal(err)
	}
	var ext *fsread.Volume
	for _, v := range s.set.Volumes() {
		if v.FSType == "ext4" {
			ext = v
		}
	}
	s.Close()
	if ext == nil {
		t.Fatal("no ext4 volume in the gpt fixture")
	}
	// Destroy the ext4 superblock (and its backups' group) of that volume.
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 4096), ext.Offset); err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{0xff}, 2048), ext.Offset+1024)
	f.Close()

	dir, _ := mountImages(t, img)
	ents, err := os.ReadDir(filepath.Join(dir, ext.Name))
	if err == nil && (len(ents) != 1 || ents[0].Name() != mount.ErrorFileName) {
		t.Errorf("corrupt volume lists %v", ents)
	}
	other := 0
	top, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range top {
		if e.Name() == ext.Name || e.Name() == mount.RawDirName {
			continue
		}
		if _, err := os.ReadDir(filepath.Join(dir, e.Name())); err == nil {
			other++
		}
	}
	if other == 0 {
		t.Fatal("no other volume readable next to the corrupt one")
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// vmmountBinary builds the command once for tests that run it as a process.
func vmmountBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmmount-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "vmmount")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func isMounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	return strings.Contains(string(b), " "+dir+" ")
}

// TestMountCommandSignals runs `vmmount mount` in the foreground, reads
// through it, sends SIGINT or SIGTERM, and checks it exits 0 with no stale
// mount left; then --background and `vmmount umount`.
func TestMountCommandSignals(t *testing.T) {
	requireFUSE(t)
	bin := vmmountBinary(t)
	x := testimages.GetExt(t, testimages.ExtVariants[2])
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, "mount", x.Image, dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			deadline := time.Now().Add(30 * time.Second)
			for !isMounted(dir) {
				if time.Now().After(deadline) {
					t.Fatalf("not mounted after 30 s: %s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := os.ReadDir(filepath.Join(dir, "fs")); err != nil {
				t.Fatal(err)
			}
			// A shell sitting in the mount must not leave it stale.
			busy, err := os.Open(filepath.Join(dir, "fs"))
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit: %v: %s", err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("did not exit after the signal")
			}
			if isMounted(dir) {
				syscall.Unmount(dir, syscall.MNT_DETACH)
				t.Fatal("stale mount left after the signal")
			}
			if !strings.Contains(stderr.String(), "Leave with Ctrl-C") {
				t.Errorf("no serving message: %q", stderr.String())
			}
		})
	}
	t.Run("background", func(t *testing.T) {
		dir := t.TempDir()
		out, err := exec.Command(bin, "mount", "--background", x.Image, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !isMounted(dir) {
			t.Fatal("--background returned before the mount was ready")
		}
		defer syscall.Unmount(dir, syscall.MNT_DETACH)
		if _, err := os.Stat(filepath.Join(dir, "fs", "big")); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "umount", dir).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v: %s", err, out)
		}
		if isMounted(dir) {
			t.Fatal("still mounted after umount")
		}
	})
	t.Run("bad-mountpoint", func(t *testing.T) {
		err := exec.Command(bin, "mount", x.Image, "/nonexistent/dir").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage {
			t.Fatalf("mount on a missing dir: %v", err)
		}
	})
}

// TestShellCommand drives `vmmount shell` with a COMMAND: it runs inside
// the mount, its exit status is passed on, and nothing is left behind.
func TestShellCommand(t *testing.T) {
	requireFUSE(t)
	bin := vmmountBinary(t)
	x := testimages.GetExt(t, testimages.ExtVariants[2])
	out, err := exec.Command(bin, "shell", x.Image, "--", "sh", "-c", `pwd; ls fs; cat "$VMMOUNT_MOUNTPOINT/fs/files/hello.txt" 2>/dev/null; exit 7`).Output()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	mnt := lines[0]
	if !strings.Contains(mnt, "vmmount-shell-") || !strings.Contains(string(out), "big") {
		t.Fatalf("output: %s", out)
	}
	if isMounted(mnt) {
		t.Fatal("shell left its mount")
	}
	if _, err := os.Stat(mnt); !os.IsNotExist(err) {
		t.Fatalf("shell left its directory: %v", err)
	}
}
