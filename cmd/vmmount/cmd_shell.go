package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/mount"
)

type shellOptions struct {
	imageFlags
}

func newShellCommand(g *globalOptions) *cobra.Command {
	var o shellOptions
	c := &cobra.Command{
		Use:   "shell [flags] SOURCE... [-- COMMAND [ARG...]]",
		Short: "Open a shell (or run a command) inside a read-only mount of SOURCE",
		Long: `Mount SOURCE into a private temporary directory, start $SHELL (or COMMAND)
there, and unmount and clean up when it exits, whatever its exit. The exit
status is the command's.

` + mountSourceHelp,
		Example: `  vmmount shell web.qcow2
  vmmount shell --repo /backup web/latest -- cat p1/etc/fstab`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sources, command := args, []string(nil)
			if i := cmd.ArgsLenAtDash(); i >= 0 {
				sources, command = args[:i], args[i:]
			}
			if len(sources) == 0 {
				return usageError{errors.New("shell needs at least one SOURCE")}
			}
			return runShell(cmd.Context(), g, &o, sources, command)
		},
	}
	o.imageFlags.AddFlags(c)
	return c
}

// exitStatusError carries a command's exit status out of vmmount shell.
type exitStatusError struct{ code int }

func (e exitStatusError) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

func runShell(ctx context.Context, g *globalOptions, o *shellOptions, sources, command []string) error {
	dir, err := os.MkdirTemp("", "vmmount-shell-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	src, err := openMountSource(ctx, g, sources, o.Format, dir)
	if err != nil {
		return err
	}
	defer src.Close()
	srv, err := mount.Mount(dir, src.root, mount.Options{
		FsName:  "vmmount",
		OnError: func(p string, err error) { g.warnf("%s: %v\n", filepath.Join(dir, p), err) },
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Unmount(); err != nil {
			g.warnf("unmount %s: %v\n", dir, err)
		}
		srv.Wait()
	}()

	if len(command) == 0 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		command = []string{sh}
		g.verbosef("%s is mounted at %s; exit the shell to unmount.\n", src.desc, dir)
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, g.stdout, g.stderr
	cmd.Env = append(os.Environ(), "VMMOUNT_MOUNTPOINT="+dir)
	// The command owns the terminal's Ctrl-C; vmmount waits for it and
	// cleans up. SIGTERM to vmmount is passed on.
	signal.Ignore(os.Interrupt)
	defer signal.Reset(os.Interrupt)
	if err := cmd.Start(); err != nil {
		return err
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waitDone:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		werr = <-waitDone
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		return exitStatusError{ee.ExitCode()}
	}
	return werr
}
