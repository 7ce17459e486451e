// Command vmmount backs up virtual machines into restore points of standard
// images, serves any restore point or disk image read-only through FUSE, and
// restores files, disks, configurations and whole VMs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/fsread/fsys"
	"github.com/vmmount/vmmount/imagefmt"
)

// version is set by the linker (-X main.version=...) in `make build`.
var version = "dev"

// Exit codes: one table, documented in `vmmount --help`.
const (
	exitOK          = 0
	exitError       = 1   // any other failure
	exitUsage       = 2   // bad command line
	exitBadInput    = 3   // an image, filesystem or repository is corrupt or unsupported
	exitNotFound    = 4   // a named file, path, VM or restore point does not exist
	exitRefused     = 5   // refused for safety (running VM, existing target, lock held)
	exitInterrupted = 130 // Ctrl-C or SIGTERM; cleanup was done
)

const exitCodeHelp = `Exit codes:
  0    success
  1    failure not listed below
  2    usage error (bad flags or arguments)
  3    bad input: an image, filesystem or repository is corrupt or unsupported
  4    not found: a named image, path, VM or restore point does not exist
  5    refused for safety: running VM, existing target, lock held
  130  interrupted (Ctrl-C / SIGTERM); partial output was removed`

// usageError marks errors in the command line.
type usageError struct{ error }

// refusedError marks refusals for safety.
type refusedError struct{ error }

func exitCode(err error) int {
	var ue usageError
	var re refusedError
	var xe exitStatusError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &xe):
		return xe.code
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &re):
		return exitRefused
	case errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	case errors.Is(err, imagefmt.ErrFormat), errors.Is(err, imagefmt.ErrUnsupported),
		errors.Is(err, imagefmt.ErrBackingLoop), errors.Is(err, imagefmt.ErrBackingMissing),
		errors.Is(err, fsys.ErrCorrupt), errors.Is(err, fsys.ErrUnsupported),
		errors.Is(err, repo.ErrCorrupt):
		return exitBadInput
	}
	return exitError
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := &globalOptions{stdout: os.Stdout, stderr: os.Stderr}
	root := newRootCommand(opts)
	err := root.ExecuteContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %v", context.Canceled, err)
		}
		var xe exitStatusError
		if !errors.As(err, &xe) {
			fmt.Fprintln(os.Stderr, "vmmount:", err)
		}
	}
	os.Exit(exitCode(err))
}

func newRootCommand(opts *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "vmmount",
		Short: "Back up VMs, browse restore points and disk images, restore files and VMs",
		Long: `vmmount backs up libvirt/KVM virtual machines into restore points made of
standard raw and qcow2 images, serves any restore point or disk image read-only
through FUSE (partitions, LVM, ext2/3/4, NTFS and FAT parsed in user space: no
kernel module, no helper VM, no loop device), and restores files, disks, VM
configurations and whole VMs.

Paths inside a disk are written /<volume>/<path>, e.g. /p1/etc/fstab: the
same path the FUSE mount shows. ` + "`vmmount info IMAGE`" + ` lists the volumes.

` + exitCodeHelp,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(opts.stdout)
	root.SetErr(opts.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	opts.AddFlags(root)
	root.AddCommand(
		newInfoCommand(opts),
		newConvertCommand(opts),
		newLsCommand(opts),
		newCatCommand(opts),
		newStatCommand(opts),
		newMountCommand(opts),
		newUmountCommand(opts),
		newShellCommand(opts),
		newBackupCommand(opts),
		newListCommand(opts),
		newVerifyCommand(opts),
		newPruneCommand(opts),
		newForgetCommand(opts),
		newRestoreCommand(opts),
		newBackupGuardCommand(opts),
		newInjectCommand(opts),
	)
	return root
}

// exactArgs is cobra.ExactArgs with the usage exit code.
func argsRange(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			if max == min {
				return usageError{fmt.Errorf("%s takes %d argument(s), got %d", cmd.Name(), min, len(args))}
			}
			return usageError{fmt.Errorf("%s: wrong number of arguments (%d)", cmd.Name(), len(args))}
		}
		return nil
	}
}
