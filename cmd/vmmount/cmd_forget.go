package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
)

type forgetOptions struct {
	Merge bool
}

func (o *forgetOptions) AddFlags(c *cobra.Command) {
	c.Flags().BoolVar(&o.Merge, "merge", false, "when other points are built on it, merge it into the next point instead of refusing")
}

func newForgetCommand(g *globalOptions) *cobra.Command {
	var o forgetOptions
	c := &cobra.Command{
		Use:   "forget [--merge] VM/ID",
		Short: "Remove one restore point",
		Long: `Remove one restore point. A point the next one is built on (an incremental's
parent) is refused, unless --merge: then its data is merged into the next
point first (journaled, as prune does), which stays readable.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runForget(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runForget(ctx context.Context, g *globalOptions, o *forgetOptions, args []string) error {
	r, err := repo.Open(g.Repo)
	if err != nil {
		return err
	}
	res, err := backup.Forget(ctx, r, args[0], o.Merge)
	if err != nil {
		if errors.Is(err, backup.ErrDependents) || errors.Is(err, repo.ErrLocked) {
			return refusedError{err}
		}
		return err
	}
	if g.JSON {
		return g.printJSON(res)
	}
	for _, m := range res.Merges {
		g.printf("merged %s/%s into %s\n", res.VM, m.From, m.Into)
	}
	g.printf("removed %s/%s\n", res.VM, res.Decisions[0].ID)
	return nil
}
