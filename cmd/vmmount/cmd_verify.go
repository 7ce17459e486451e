package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/internal/progress"
)

type verifyOptions struct {
	NoFS bool
}

func (o *verifyOptions) AddFlags(c *cobra.Command) {
	c.Flags().BoolVar(&o.NoFS, "no-fs", false, "do not open and walk the guest filesystems")
}

func newVerifyCommand(g *globalOptions) *cobra.Command {
	var o verifyOptions
	c := &cobra.Command{
		Use:   "verify [--json] [--no-fs] [VM | VM/ID]...",
		Short: "Check restore points: checksums, image structure, guest filesystems",
		Long: `Check restore points of the repository: each manifest and chain, the saved
configuration files against their SHA-256, each image's size, header, backing
file and mapping tables, every 64 KiB block of every disk against the SHA-256
recorded at backup time, and every guest filesystem vmmount reads (ext2/3/4,
NTFS, FAT), opened and walked. Without arguments every point of every VM is
checked; a point is checked with the points it is built on.

The exit status is 3 when any fault is found.`,
		Args: argsRange(0, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runVerify(ctx context.Context, g *globalOptions, o *verifyOptions, args []string) error {
	r, err := repo.Open(g.Repo)
	if err != nil {
		return err
	}
	// VM -> ids (nil: all points).
	sel := map[string][]string{}
	var order []string
	add := func(vm, id string) {
		if _, ok := sel[vm]; !ok {
			order = append(order, vm)
			sel[vm] = nil
		}
		if id != "" {
			sel[vm] = append(sel[vm], id)
		}
	}
	if len(args) == 0 {
		vms, err := r.VMs()
		if err != nil {
			return err
		}
		for _, vm := range vms {
			add(vm, "")
		}
	}
	for _, a := range args {
		if !strings.Contains(a, "/") {
			if err := repo.CheckVMName(a); err != nil {
				return usageError{err}
			}
			add(a, "")
			continue
		}
		p, err := r.Point(a)
		if err != nil {
			return err
		}
		add(p.VM, p.ID)
	}
	opts := backup.VerifyOptions{NoFilesystems: o.NoFS}
	if g.showProgress() {
		opts.Progress = progress.NewBar(g.stderr)
	}
	all := []*backup.PointReport{}
	failed := 0
	for _, vm := range order {
		reps, err := backup.Verify(ctx, r, vm, sel[vm], opts)
		all = append(all, reps...)
		if err != nil {
			return err
		}
		for _, rep := range reps {
			if !rep.OK {
				failed++
			}
			if g.JSON {
				continue
			}
			if rep.OK {
				var fs []string
				for _, d := range rep.Disks {
					for _, f := range d.Filesystems {
						s := fmt.Sprintf("%s %s", f.Volume, f.Type)
						if f.Skipped != "" {
							s += " (not checked)"
						}
						fs = append(fs, s)
					}
				}
				g.printf("%s: ok", rep.Point)
				if len(fs) > 0 {
					g.printf(" (filesystems: %s)", strings.Join(fs, ", "))
				}
				g.printf("\n")
				continue
			}
			g.printf("%s: FAILED\n", rep.Point)
			for _, f := range rep.Faults {
				g.printf("  %s\n", f)
			}
		}
	}
	if g.JSON {
		if err := g.printJSON(all); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d restore point(s) failed verification: %w", failed, len(all), repo.ErrCorrupt)
	}
	return nil
}
