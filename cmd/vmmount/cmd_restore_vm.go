package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/internal/progress"
	"github.com/vmmount/vmmount/restore"
)

type restoreVMOptions struct {
	Name        string
	Dir         string
	NewIdentity bool
	Define      bool
	Start       bool
	Replace     bool
	Format      string
	Connect     string
}

func (o *restoreVMOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.Name, "name", "", "restore a copy under this name (new UUID and MAC addresses)")
	f.StringVar(&o.Dir, "dir", "", "directory for the disks, NVRAM and console logs (a copy's default: next to the original's first disk)")
	f.BoolVar(&o.NewIdentity, "new-identity", false, "a copy with new UUID and MAC addresses (named VM-ID unless --name)")
	f.BoolVar(&o.Define, "define", false, "define the domain in libvirt (otherwise its XML is written next to the disks)")
	f.BoolVar(&o.Start, "start", false, "define and start it")
	f.BoolVar(&o.Replace, "replace", false, "replace a shut-off domain of the same name or UUID, and existing files")
	f.StringVar(&o.Format, "format", "", "disk image format: qcow2 or raw (default: each disk's original format)")
	f.StringVarP(&o.Connect, "connect", "c", restore.DefaultURI, "libvirt URI")
}

func newRestoreVMCommand(g *globalOptions) *cobra.Command {
	var o restoreVMOptions
	c := &cobra.Command{
		Use:   "vm POINT [--name NEW] [--dir DIR] [--new-identity] [--define] [--start] [--replace]",
		Short: "Restore a whole VM: disaster recovery, or a copy under a new identity",
		Long: `Restore the whole VM of restore point POINT: its disks (flattened, every block
checked against the backup), NVRAM, direct-boot kernel and initrd, and its
libvirt domain.

Disaster recovery (no --name, no --new-identity): the same name, UUID, MAC
addresses and disk paths (or disks in --dir). Refused while a domain with that
name or UUID exists, unless --replace and that domain is shut off; existing
disk files are refused without --replace too.

Alternate location (--name NEW or --new-identity): an exact copy for test and
development, with a new name, UUID and MAC addresses, its disks, NVRAM and
console logs in DIR, a new VM generation ID; disks of the original that are
not in the point are left out (they would be shared).

With --define the domain is defined through libvirt (--start also starts it);
otherwise its XML is written next to the disks for ` + "`virsh define`" + `.
Everything is checked before anything is written; files created are removed
again if a later step fails.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestoreVM(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runRestoreVM(ctx context.Context, g *globalOptions, o *restoreVMOptions, args []string) error {
	switch o.Format {
	case "", "raw", "qcow2":
	default:
		return usageError{fmt.Errorf("--format %q: want qcow2 or raw", o.Format)}
	}
	p, err := openRestorePoint(ctx, g, args[0])
	if err != nil {
		return err
	}
	defer p.Close()
	conn, err := restore.Connect(ctx, o.Connect)
	if err != nil {
		return err
	}
	defer conn.Disconnect()
	opts := restore.VMOptions{Conn: conn, Name: o.Name, NewIdentity: o.NewIdentity, Dir: o.Dir, Format: o.Format,
		Define: o.Define || o.Start, Start: o.Start, Replace: o.Replace,
		Notify: func(msg string) { g.verbosef("%s\n", msg) }}
	if g.showProgress() {
		opts.Progress = progress.NewBar(g.stderr)
	}
	res, err := restore.RestoreVM(ctx, p, opts)
	if res != nil {
		for _, w := range res.Warnings {
			g.warnf("%s\n", w)
		}
	}
	if err != nil && (res == nil || !res.Defined) {
		return restoreError(err)
	}
	if g.JSON {
		if jerr := g.printJSON(res); jerr != nil {
			return jerr
		}
		return err
	}
	kind := "disaster recovery"
	if res.NewIdentity {
		kind = "copy under a new identity"
	}
	g.printf("%s -> %s (%s), %s\n", p.Point.Ref(), res.Name, res.UUID, kind)
	for _, d := range res.Disks {
		g.printf("  disk %s: %s (%s)\n", d.Target, d.Path, d.Format)
	}
	for _, f := range []struct{ what, path string }{{"nvram", res.NVRAM}, {"kernel", res.Kernel}, {"initrd", res.Initrd}} {
		if f.path != "" {
			g.printf("  %s: %s\n", f.what, f.path)
		}
	}
	switch {
	case res.Started:
		g.printf("  defined and started\n")
	case res.Defined:
		g.printf("  defined; start it with: virsh start %s\n", res.Name)
	case res.XMLFile != "":
		g.printf("  domain XML: %s (define it with: virsh define %s)\n", res.XMLFile, res.XMLFile)
	}
	return err
}
