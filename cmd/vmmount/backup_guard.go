package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup"
)

// A live backup leaves the VM frozen or paused, and a backup job
// exporting its disks, for a moment or for the whole copy. If vmmount is
// killed then (SIGKILL, OOM killer) it cannot undo that, so `vmmount
// backup` of a domain starts a guard first: a process of its own that
// holds a pipe from the backup and, if the pipe closes without the backup
// saying it is done, thaws, resumes and ends the job at once from what the
// backup recorded in its scratch directory (backup.Domain.Heal).

const guardDone = "done\n"

// startGuard starts the guard for a domain backup and returns the function
// that dismisses it.
func startGuard(g *globalOptions, o *backupOptions, domain string) func() {
	exe, err := os.Executable()
	if err != nil {
		g.debugf("no backup guard: %v\n", err)
		return func() {}
	}
	cmd := exec.Command(exe, "backup-guard", "--connect", o.Connect, "--scratch-dir", o.ScratchDir, domain)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group: Ctrl-C is for the backup, which cleans up
	// itself and then dismisses the guard.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return func() {}
	}
	if err := cmd.Start(); err != nil {
		g.debugf("no backup guard: %v\n", err)
		return func() {}
	}
	go cmd.Wait()
	return func() {
		io.WriteString(w, guardDone)
		w.Close()
	}
}

type guardOptions struct {
	Connect    string
	ScratchDir string
}

func newBackupGuardCommand(g *globalOptions) *cobra.Command {
	var o guardOptions
	c := &cobra.Command{
		Use:    "backup-guard DOMAIN",
		Short:  "Undo what a killed backup did to a VM (started by vmmount backup)",
		Hidden: true,
		Args:   argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackupGuard(cmd.Context(), g, &o, args, os.Stdin)
		},
	}
	c.Flags().StringVar(&o.Connect, "connect", backup.DefaultURI, "libvirt URI")
	c.Flags().StringVar(&o.ScratchDir, "scratch-dir", backup.DefaultScratchDir, "the backup's scratch directory")
	return c
}

func runBackupGuard(ctx context.Context, g *globalOptions, o *guardOptions, args []string, in io.Reader) error {
	line, _ := bufio.NewReader(in).ReadString('\n')
	if line == guardDone {
		return nil
	}
	// The backup died. Heal with a context of our own: Ctrl-C that killed
	// it must not stop the guard.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	d := &backup.Domain{URI: o.Connect, Name: args[0], ScratchDir: o.ScratchDir}
	defer d.Close()
	did, err := d.Heal(hctx)
	for _, s := range did {
		fmt.Fprintf(g.stderr, "vmmount backup-guard: %s\n", s)
	}
	return err
}
