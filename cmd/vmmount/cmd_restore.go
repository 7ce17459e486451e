package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/restore"
)

func newRestoreCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "restore files|disk|config|vm",
		Short: "Restore files, a disk, the configuration or a whole VM from a restore point",
		Long: `Restore from a restore point of the repository (--repo), named VM/ID or
VM/latest (` + "`vmmount list`" + ` shows them):

  files   guest files and directories, into a directory or a tar stream
          (from disk images too)
  disk    one disk, its chain flattened, into a standalone image or onto a
          block device
  config  the VM's libvirt domain XML, printed, written or defined
  vm      the whole VM: disaster recovery under its own identity, or a copy
          under a new one

A point is checked before anything is written (manifests, chain, image files,
checksum lists), and every block read from it is checked against the SHA-256
recorded at backup time.`,
	}
	c.AddCommand(
		newRestoreFilesCommand(g),
		newRestoreDiskCommand(g),
		newRestoreConfigCommand(g),
		newRestoreVMCommand(g),
	)
	return c
}

// openRestorePoint opens and checks a point of the repository.
func openRestorePoint(ctx context.Context, g *globalOptions, ref string) (*restore.Point, error) {
	r, err := repo.Open(g.Repo)
	if err != nil {
		return nil, err
	}
	p, err := restore.OpenPoint(ctx, r, ref)
	if errors.Is(err, repo.ErrBadName) {
		return nil, usageError{err}
	}
	return p, err
}

// restoreError gives refusals their exit code.
func restoreError(err error) error {
	switch {
	case errors.Is(err, restore.ErrExists), errors.Is(err, restore.ErrInUse),
		errors.Is(err, restore.ErrDomainActive):
		return refusedError{err}
	}
	return err
}
