package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/mount"
)

type mountOptions struct {
	imageFlags
	Background bool
	AllowOther bool
	Log        string
	FuseDebug  bool
}

func (o *mountOptions) AddFlags(c *cobra.Command) {
	o.imageFlags.AddFlags(c)
	f := c.Flags()
	f.BoolVar(&o.Background, "background", false, "return once the mount is ready and keep serving in the background")
	f.BoolVar(&o.AllowOther, "allow-other", false, "let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root)")
	f.StringVar(&o.Log, "log", "", "with --background, append errors (EIO reports) to this file")
	f.BoolVar(&o.FuseDebug, "fuse-debug", false, "log every FUSE request to stderr")
}

const mountSourceHelp = `SOURCE is one of:
  IMAGE...     disk images of one VM (raw, qcow2, vmdk, vhd, vhdx; backing
               chains followed): MOUNTPOINT/<volume>/... for one disk,
               MOUNTPOINT/<disk>/<volume>/... for several, LVs at
               MOUNTPOINT/<vg>-<lv>/...; each disk directory has .raw/ with
               the raw bytes of the disk and of each volume.
  REPOSITORY   a repository directory: MOUNTPOINT/<vm>/<point>/... with a
               "latest" link per VM and the VM configuration beside the disks.
  VM, VM/ID, VM/latest
               a VM's points, or one point, of the repository (--repo).
Everything is read-only; filesystems open when first listed. A volume that
cannot be read shows VMMOUNT-ERROR.txt with the reason.`

func newMountCommand(g *globalOptions) *cobra.Command {
	var o mountOptions
	c := &cobra.Command{
		Use:   "mount [flags] SOURCE... MOUNTPOINT",
		Short: "Serve disk images or restore points read-only through FUSE",
		Long: `Serve disk images, a repository or restore points read-only through FUSE, so
files can be browsed with a shell and copied out. Runs in the foreground until
Ctrl-C, SIGTERM or ` + "`vmmount umount MOUNTPOINT`" + `; --background returns once the
mount is ready. As root it mounts directly; other users need fusermount3.

` + mountSourceHelp,
		Example: `  vmmount mount /var/lib/libvirt/images/web.qcow2 /mnt/web
  vmmount mount --repo /backup web/latest /mnt/web
  vmmount mount /backup /mnt/all`,
		Args: argsRange(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// backgroundEnv carries the readiness pipe's fd to the background child.
const backgroundEnv = "VMMOUNT_BACKGROUND_FD"

func runMount(ctx context.Context, g *globalOptions, o *mountOptions, args []string) error {
	sources, dir := args[:len(args)-1], args[len(args)-1]
	if err := mount.CheckMountpoint(dir); err != nil {
		return usageError{err}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var ready *os.File
	if fd := os.Getenv(backgroundEnv); fd != "" {
		ready = os.NewFile(3, "ready")
		os.Unsetenv(backgroundEnv)
	} else if o.Background {
		return startBackground(g, o)
	}
	report := func(err error) {
		if ready != nil {
			fmt.Fprintf(ready, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			ready.Close()
		}
	}

	src, err := openMountSource(ctx, g, sources, o.Format, abs)
	if err != nil {
		report(err)
		return err
	}
	defer src.Close()
	srv, err := mount.Mount(abs, src.root, mount.Options{
		AllowOther: o.AllowOther,
		FsName:     "vmmount",
		Debug:      o.FuseDebug,
		OnError:    func(p string, err error) { g.warnf("%s: %v\n", p, err) },
	})
	if err != nil {
		report(err)
		return err
	}
	if ready != nil {
		fmt.Fprintf(ready, "ok\n")
		ready.Close()
	} else {
		g.verbosef("Serving %s at %s (read-only).\nLeave with Ctrl-C or `vmmount umount %s`.\n", src.desc, abs, abs)
	}
	return serveUntilDone(ctx, g, srv)
}

// serveUntilDone waits for the mount to go away, unmounting it when ctx
// ends (Ctrl-C, SIGTERM). A busy mount is detached lazily, so no stale
// mount is left behind.
func serveUntilDone(ctx context.Context, g *globalOptions, srv *mount.Server) error {
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	g.verbosef("Unmounting %s\n", srv.Dir())
	if err := srv.Unmount(); err != nil {
		g.warnf("unmount %s: %v\n", srv.Dir(), err)
	}
	<-done
	return nil
}

// startBackground runs this command again as a detached child and waits
// until it says the mount is ready (or why it is not).
func startBackground(g *globalOptions, o *mountOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	var args []string
	for _, a := range os.Args[1:] {
		if a != "--background" && a != "--background=true" {
			args = append(args, a)
		}
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), backgroundEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
	if o.Log != "" {
		lf, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			w.Close()
			return err
		}
		defer lf.Close()
		cmd.Stdout, cmd.Stderr = lf, lf
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		g.verbosef("Mounted in the background (pid %d); leave with `vmmount umount %s`.\n", cmd.Process.Pid, os.Args[len(os.Args)-1])
		cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "error "):
		cmd.Wait()
		return errors.New(strings.TrimPrefix(line, "error "))
	}
	werr := cmd.Wait()
	return fmt.Errorf("background mount exited before it was ready: %v", werr)
}

type umountOptions struct {
	Lazy bool
}

func newUmountCommand(g *globalOptions) *cobra.Command {
	var o umountOptions
	c := &cobra.Command{
		Use:   "umount [--lazy] MOUNTPOINT",
		Short: "Unmount a vmmount mount",
		Long: `Unmount a mount made by vmmount mount (foreground or --background); the
serving process then exits. --lazy detaches a busy mount at once; it goes
away when the last user leaves.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUmount(cmd.Context(), g, &o, args)
		},
	}
	c.Flags().BoolVarP(&o.Lazy, "lazy", "l", false, "detach a busy mount lazily")
	return c
}

func runUmount(ctx context.Context, g *globalOptions, o *umountOptions, args []string) error {
	dir := args[0]
	flags := 0
	if o.Lazy {
		flags = syscall.MNT_DETACH
	}
	err := syscall.Unmount(dir, flags)
	if errors.Is(err, syscall.EPERM) {
		// Not root: fusermount3 unmounts what this user mounted.
		fargs := []string{"-u", dir}
		if o.Lazy {
			fargs = []string{"-u", "-z", dir}
		}
		out, ferr := exec.CommandContext(ctx, "fusermount3", fargs...).CombinedOutput()
		if ferr != nil {
			return fmt.Errorf("umount %s: %v: %s", dir, ferr, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if errors.Is(err, syscall.EBUSY) {
		return refusedError{fmt.Errorf("umount %s: busy (a shell or program is using it; leave it, or use --lazy)", dir)}
	}
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("umount %s: not a mount point", dir)
	}
	if err != nil {
		return fmt.Errorf("umount %s: %w", dir, err)
	}
	return nil
}
