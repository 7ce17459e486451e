package testimages

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// The test guest is a Debian cloud kernel booted directly (no bootloader)
// with a busybox initramfs that mounts the virtio disk /dev/vda at /mnt,
// runs the QEMU guest agent and an ACPI power-button handler, prints
// GuestReadyMarker on its serial console, then runs /autorun.sh from the disk
// or keeps writing /counter on it (guestfiles/init.sh). It boots in a few
// seconds under TCG, which is what CI has (no nested KVM).

// GuestReadyMarker is the line the guest prints on its console once the disk
// is mounted and the agent and power-button handler run. It is followed by
// " agent=yes" or " agent=no".
const GuestReadyMarker = "VMMOUNT-GUEST-READY"

// GuestKernelCmdline is the kernel command line of the test guest. panic=-1
// with on_reboot=destroy in the domain turns a guest crash into a shut-off
// domain, which the harness reports with the console, instead of a reboot
// loop. quiet and cryptomgr.notests save boot time under TCG, where every
// console byte and crypto self-test is emulated.
const GuestKernelCmdline = "console=ttyS0 panic=-1 quiet cryptomgr.notests"

// guestModules are the kernel modules the guest loads, in dependency order:
// virtio transport, block and console (agent channel), then the ACPI power
// button and evdev through which acpid sees it. ext4 is built into the cloud
// kernel.
var guestModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "virtio_blk", "virtio_console", "button", "evdev",
}

// GuestTools are the host tools the guest and its disks are built with.
var GuestTools = []string{"apt-get", "dpkg-deb", "busybox", "qemu-ga", "ldd", "mkfs.ext4", "qemu-img"}

const guestVersion = "v2"

var (
	//go:embed guestfiles/init.sh
	guestInit string
	//go:embed guestfiles/power.sh
	guestPowerHandler string
)

// GuestAssets are the boot files of the test guest.
type GuestAssets struct {
	Kernel        string // bzImage for <os><kernel>
	Initrd        string // uncompressed newc cpio for <os><initrd>
	KernelVersion string // e.g. 6.1.0-56-cloud-amd64
}

// GetGuestAssets returns the cached kernel and initramfs of the test guest,
// building them the first time (a few seconds: it downloads the kernel
// package with apt).
func GetGuestAssets(t testing.TB) GuestAssets {
	t.Helper()
	RequireTools(t, GuestTools...)
	dir := Get(t, "guest", guestVersion, buildGuestAssets)
	kv, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	if err != nil {
		t.Fatal(err)
	}
	return GuestAssets{
		Kernel:        filepath.Join(dir, "vmlinuz"),
		Initrd:        filepath.Join(dir, "initrd.cpio"),
		KernelVersion: strings.TrimSpace(string(kv)),
	}
}

func buildGuestAssets(dir string) error {
	debs := filepath.Join(dir, "debs")
	if err := os.Mkdir(debs, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(debs)
	deb, err := downloadKernel(debs)
	if err != nil {
		return err
	}
	kv, kernel, modules, err := kernelFromDeb(deb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel-version"), []byte(kv+"\n"), 0o644); err != nil {
		return err
	}
	a, err := guestInitramfs(modules)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "initrd.cpio"))
	if err != nil {
		return err
	}
	if err := a.writeTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// downloadKernel fetches linux-image-cloud-amd64 and the versioned
// linux-image-* package it depends on, and returns the latter's path. apt
// runs as root without its _apt sandbox because the cache directory is
// root's; the package lists are refreshed once if they lack the package.
func downloadKernel(dir string) (string, error) {
	get := func(pkg string) error {
		_, err := RunIn(dir, nil, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg)
		return err
	}
	const meta = "linux-image-cloud-amd64"
	if err := get(meta); err != nil {
		if _, uerr := Run("apt-get", "update", "-q"); uerr != nil {
			return "", fmt.Errorf("%w (and apt-get update: %v)", err, uerr)
		}
		if err := get(meta); err != nil {
			return "", err
		}
	}
	metas, _ := filepath.Glob(filepath.Join(dir, meta+"_*.deb"))
	if len(metas) != 1 {
		return "", fmt.Errorf("apt-get download %s: got %q", meta, metas)
	}
	dep, err := Run("dpkg-deb", "-f", metas[0], "Depends")
	if err != nil {
		return "", err
	}
	// "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)": the first package.
	pkg := strings.Fields(strings.Split(dep, ",")[0])
	if len(pkg) == 0 || !strings.HasPrefix(pkg[0], "linux-image-") {
		return "", fmt.Errorf("%s depends on %q, not a linux-image package", meta, dep)
	}
	if err := get(pkg[0]); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg[0]+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s: got %q", pkg[0], debs)
	}
	return debs[0], nil
}

// kernelFromDeb reads the kernel package's data tar (dpkg-deb --fsys-tarfile)
// and returns the kernel release, boot/vmlinuz-* and the guest modules by
// name, without unpacking the rest.
func kernelFromDeb(deb string) (string, []byte, map[string][]byte, error) {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	want := map[string]bool{}
	for _, m := range guestModules {
		want[m+".ko"] = true
	}
	var (
		kv     string
		kernel []byte
		mods   = map[string][]byte{}
	)
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return "", nil, nil, fmt.Errorf("%s: %w", deb, err)
		}
		name := path.Clean(h.Name)
		base := path.Base(name)
		switch {
		case h.Typeflag == tar.TypeReg && strings.HasPrefix(name, "boot/vmlinuz-"):
			kv = strings.TrimPrefix(name, "boot/vmlinuz-")
			kernel, err = io.ReadAll(tr)
		case h.Typeflag == tar.TypeReg && strings.HasPrefix(name, "lib/modules/") && want[base]:
			mods[strings.TrimSuffix(base, ".ko")], err = io.ReadAll(tr)
		}
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return "", nil, nil, err
		}
	}
	if err := cmd.Wait(); err != nil {
		return "", nil, nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %v: %s", deb, err, stderr.String())
	}
	if kernel == nil {
		return "", nil, nil, fmt.Errorf("%s has no boot/vmlinuz-*", deb)
	}
	var missing []string
	for _, m := range guestModules {
		if mods[m] == nil {
			missing = append(missing, m)
		}
	}
	if missing != nil {
		return "", nil, nil, fmt.Errorf("%s lacks modules %s (built in? then drop them from guestModules)", deb, strings.Join(missing, " "))
	}
	return kv, kernel, mods, nil
}

// guestInitramfs lays out the guest's root: busybox, qemu-ga with the shared
// libraries ldd lists, the modules, /init and the power-button handler.
func guestInitramfs(modules map[string][]byte) (*cpioArchive, error) {
	a := newCpioArchive()
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "mnt", "etc", "root"} {
		a.dir(d)
	}
	a.symlink("var/run", "/run")
	a.charDev("dev/console", 5, 1) // the kernel opens it before /init runs
	a.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	a.file("etc/group", 0o644, []byte("root:x:0:\n"))

	init := strings.NewReplacer(
		"@MODULES@", strings.Join(guestModules, " "),
		"@MARKER@", GuestReadyMarker,
	).Replace(guestInit)
	a.file("init", 0o755, []byte(init))
	// busybox acpid maps the power key to the action "PWRF/00000080" and
	// runs that path under its config directory (-c /etc/acpi).
	a.file("etc/acpi/PWRF/00000080", 0o755, []byte(guestPowerHandler))
	for _, m := range guestModules {
		a.file("lib/modules/"+m+".ko", 0o644, modules[m])
	}

	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, err
	}
	if err := addHostFile(a, busybox, "bin/busybox"); err != nil {
		return nil, err
	}
	ga, err := exec.LookPath("qemu-ga")
	if err != nil {
		return nil, err
	}
	if err := addHostFile(a, ga, "usr/sbin/qemu-ga"); err != nil {
		return nil, err
	}
	libs, err := sharedLibraries(ga)
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		if err := addHostFile(a, lib, lib); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// addHostFile copies the host file src (symlinks followed) into the archive
// as dst, keeping its permission bits.
func addHostFile(a *cpioArchive, src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	a.file(dst, fi.Mode().Perm(), data)
	return nil
}

// sharedLibraries returns the absolute paths ldd lists for bin, the dynamic
// loader included, as the binary will look them up in the guest.
func sharedLibraries(bin string) ([]string, error) {
	out, err := Run("ldd", bin)
	if err != nil {
		return nil, err
	}
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2]) // libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // /lib64/ld-linux-x86-64.so.2 (0x...)
		case len(f) >= 2 && f[1] == "=>":
			return nil, fmt.Errorf("ldd %s: unresolved library: %s", bin, strings.TrimSpace(line))
		}
	}
	if len(libs) == 0 {
		return nil, errors.New("ldd " + bin + ": no libraries listed (static binary?)")
	}
	return libs, nil
}
