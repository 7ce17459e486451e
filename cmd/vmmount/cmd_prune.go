package main

import (
	"context"
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
)

type pruneOptions struct {
	Policy repo.Policy
	DryRun bool
}

func (o *pruneOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.IntVar(&o.Policy.Last, "keep-last", 0, "keep the N newest points")
	f.IntVar(&o.Policy.Daily, "keep-daily", 0, "keep the newest point of each of the N last days with points")
	f.IntVar(&o.Policy.Weekly, "keep-weekly", 0, "keep the newest point of each of the N last ISO weeks with points")
	f.IntVar(&o.Policy.Monthly, "keep-monthly", 0, "keep the newest point of each of the N last months with points")
	f.BoolVarP(&o.DryRun, "dry-run", "n", false, "only say what would be kept, removed and merged")
}

func newPruneCommand(g *globalOptions) *cobra.Command {
	var o pruneOptions
	c := &cobra.Command{
		Use:   "prune --keep-last N --keep-daily N --keep-weekly N --keep-monthly N [--dry-run] [VM...]",
		Short: "Remove restore points a retention policy does not keep",
		Long: `Remove the restore points the retention policy does not keep, for each VM
given (default: all). A point is kept when any rule keeps it; the newest
point of a VM is always kept. Times are UTC.

An incremental point that is kept while the point it is built on goes is
merged with it first, so every kept point stays readable. The merge is
journaled: if it is interrupted (killed, power loss), every kept point still
reads as it did, and the next prune or backup of the VM finishes it.`,
		Args: argsRange(0, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPrune(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runPrune(ctx context.Context, g *globalOptions, o *pruneOptions, args []string) error {
	if o.Policy.Empty() {
		return usageError{errors.New("give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly")}
	}
	r, err := repo.Open(g.Repo)
	if err != nil {
		return err
	}
	vms := args
	if len(vms) == 0 {
		if vms, err = r.VMs(); err != nil {
			return err
		}
	}
	results := []*backup.PruneResult{}
	for _, vm := range vms {
		res, err := backup.Prune(ctx, r, vm, o.Policy, o.DryRun)
		if res != nil {
			results = append(results, res)
			if !g.JSON {
				g.printPrune(res, o.DryRun)
			}
		}
		if err != nil {
			if errors.Is(err, repo.ErrLocked) {
				return refusedError{err}
			}
			return err
		}
	}
	if g.JSON {
		return g.printJSON(results)
	}
	return nil
}

func (g *globalOptions) printPrune(res *backup.PruneResult, dry bool) {
	for _, c := range res.Cleaned {
		g.verbosef("%s\n", c)
	}
	verb := map[bool]string{true: "keep  ", false: "remove"}
	if !dry {
		verb = map[bool]string{true: "kept   ", false: "removed"}
	}
	for _, d := range res.Decisions {
		line := verb[d.Keep] + " " + res.VM + "/" + d.ID
		if len(d.Reasons) > 0 {
			line += " (" + strings.Join(d.Reasons, ", ") + ")"
		}
		g.printf("%s\n", line)
	}
	for _, m := range res.Merges {
		if dry {
			g.printf("would merge %s/%s into %s\n", res.VM, m.From, m.Into)
		} else {
			g.printf("merged %s/%s into %s\n", res.VM, m.From, m.Into)
		}
	}
}
