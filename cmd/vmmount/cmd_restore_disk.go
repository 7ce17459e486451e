package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/internal/progress"
	"github.com/vmmount/vmmount/restore"
)

type restoreDiskOptions struct {
	To     string
	Format string
	Force  bool
}

func (o *restoreDiskOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.To, "to", "", "image file to write, or an existing block device (/dev/X)")
	f.StringVar(&o.Format, "format", "", "raw or qcow2 (default: qcow2 when --to ends in .qcow2, else raw)")
	f.BoolVar(&o.Force, "force", false, "replace an existing file; write onto a block device")
}

func newRestoreDiskCommand(g *globalOptions) *cobra.Command {
	var o restoreDiskOptions
	c := &cobra.Command{
		Use:   "disk POINT TARGET --to PATH [--format raw|qcow2] [--force]",
		Short: "Restore one disk of a point into a standalone image or onto a block device",
		Long: `Write disk TARGET (vda, sdb: ` + "`vmmount list`" + ` shows them) of the restore point POINT,
its chain of incrementals flattened, to PATH: a new standalone image file
(sparse raw, or qcow2 without backing file, which qemu and libvirt open as
they are), or onto an existing block device (written raw; refused while it or
a partition of it is mounted, used as swap or held by device-mapper or md).

Every block is checked against the SHA-256 the backup recorded; a mismatch
stops the restore. A file is written under a temporary name next to PATH and
renamed when complete and synced: a failure, a full disk or Ctrl-C leave
nothing behind. An interrupted restore onto a device leaves it partly
written, with its first and last MiB zeroed so it is not taken for a good
disk. An existing PATH is refused without --force.`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestoreDisk(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runRestoreDisk(ctx context.Context, g *globalOptions, o *restoreDiskOptions, args []string) error {
	if o.To == "" {
		return usageError{fmt.Errorf("--to PATH is required")}
	}
	format := strings.ToLower(o.Format)
	switch format {
	case "":
		format = "raw"
		if strings.HasSuffix(strings.ToLower(o.To), ".qcow2") {
			format = "qcow2"
		}
	case "raw", "qcow2":
	default:
		return usageError{fmt.Errorf("--format %q: want raw or qcow2", o.Format)}
	}
	p, err := openRestorePoint(ctx, g, args[0])
	if err != nil {
		return err
	}
	defer p.Close()
	d, err := p.Disk(args[1])
	if err != nil {
		return err
	}
	var prog progress.Progress
	if g.showProgress() {
		prog = progress.NewBar(g.stderr)
	}
	res, err := restore.RestoreDisk(ctx, d, o.To, restore.DiskOptions{Format: format, Force: o.Force, Progress: prog})
	if err != nil {
		return restoreError(err)
	}
	if g.JSON {
		return g.printJSON(res)
	}
	where := fmt.Sprintf("%s on disk", progress.Bytes(res.Allocated))
	if res.BlockDevice {
		where = "block device"
	}
	g.printf("%s/%s -> %s: %s, %s virtual, %s; every block checked against the backup\n",
		p.Point.Ref(), d.Target, res.Path, res.Format, progress.Bytes(res.VirtualSize), where)
	return nil
}
