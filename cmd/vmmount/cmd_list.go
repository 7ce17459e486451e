package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/internal/progress"
)

type listOptions struct{}

func (o *listOptions) AddFlags(c *cobra.Command) {}

func newListCommand(g *globalOptions) *cobra.Command {
	var o listOptions
	c := &cobra.Command{
		Use:   "list [--json] [VM...]",
		Short: "List the restore points of the repository",
		Long: `List the restore points of the repository (--repo), oldest first per VM: id,
time, mode, consistency reached, disks, the space the point's images take
(stored), the disks' virtual size, and the point it is an incremental of.
Points are named VM/ID; VM/latest is the newest.`,
		Args: argsRange(0, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runList(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

// listEntry is one point in `list --json`.
type listEntry struct {
	VM          string    `json:"vm"`
	ID          string    `json:"id"`
	Point       string    `json:"point"`
	Time        time.Time `json:"time"`
	Mode        string    `json:"mode"`
	Consistency string    `json:"consistency"`
	Disks       []string  `json:"disks"`
	StoredBytes int64     `json:"stored_bytes"`
	VirtualSize int64     `json:"virtual_size"`
	Parent      string    `json:"parent,omitempty"`
	ChainLength int       `json:"chain_length"`
	Warnings    []string  `json:"warnings,omitempty"`
	Path        string    `json:"path"`
}

func runList(ctx context.Context, g *globalOptions, o *listOptions, args []string) error {
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
	entries := []listEntry{}
	var damaged []error
	for _, vm := range vms {
		points, errs, err := r.Points(vm)
		if err != nil {
			return err
		}
		damaged = append(damaged, errs...)
		for _, p := range points {
			m := p.Manifest
			e := listEntry{VM: p.VM, ID: p.ID, Point: p.Ref(), Time: m.Time, Mode: m.Mode, Consistency: m.Consistency,
				Parent: m.Parent, ChainLength: m.ChainLength, Warnings: m.Warnings, Path: p.Dir}
			for _, d := range m.Disks {
				e.Disks = append(e.Disks, d.Target)
				e.StoredBytes += d.StoredBytes
				e.VirtualSize += d.VirtualSize
			}
			entries = append(entries, e)
		}
	}
	for _, e := range damaged {
		g.warnf("%v\n", e)
	}
	if g.JSON {
		return g.printJSON(entries)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POINT\tTIME\tMODE\tCONSISTENCY\tDISKS\tSTORED\tVIRTUAL\tPARENT")
	for _, e := range entries {
		parent := e.Parent
		if parent == "" {
			parent = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Point, e.Time.Local().Format("2006-01-02 15:04:05"),
			e.Mode, e.Consistency, strings.Join(e.Disks, ","), progress.Bytes(e.StoredBytes), progress.Bytes(e.VirtualSize), parent)
	}
	return tw.Flush()
}
