package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/restore"
)

type restoreConfigOptions struct {
	To      string
	Define  bool
	Name    string
	Replace bool
	Force   bool
	Connect string
}

func (o *restoreConfigOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.To, "to", "", "write the domain XML to FILE instead of standard output")
	f.BoolVar(&o.Define, "define", false, "define the domain in libvirt")
	f.StringVar(&o.Name, "name", "", "a copy under this name, with a new UUID and new MAC addresses")
	f.BoolVar(&o.Replace, "replace", false, "--define: replace a shut-off domain of the same name or UUID")
	f.BoolVar(&o.Force, "force", false, "--to: replace an existing file")
	f.StringVarP(&o.Connect, "connect", "c", restore.DefaultURI, "libvirt URI")
}

func newRestoreConfigCommand(g *globalOptions) *cobra.Command {
	var o restoreConfigOptions
	c := &cobra.Command{
		Use:   "config POINT [--to FILE | --define [--name NEW]]",
		Short: "Print, write or define the VM configuration saved with a point",
		Long: `The libvirt domain XML saved with restore point POINT: printed, written to
FILE (--to), or defined in libvirt (--define). --name NEW makes it a copy
under a new identity: new name, UUID and MAC addresses, console log files
renamed; its disks stay those of the original configuration (restore vm
--name makes a copy with its own disks). --define is refused while a domain
of that name or UUID exists, unless --replace and it is shut off.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestoreConfig(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runRestoreConfig(ctx context.Context, g *globalOptions, o *restoreConfigOptions, args []string) error {
	if o.To != "" && o.Define {
		return usageError{errors.New("give either --to FILE or --define")}
	}
	if o.Replace && !o.Define {
		return usageError{errors.New("--replace goes with --define")}
	}
	if o.To != "" && !o.Force {
		if _, err := os.Lstat(o.To); err == nil {
			return refusedError{fmt.Errorf("%s exists; use --force to replace it", o.To)}
		}
	}
	p, err := openRestorePoint(ctx, g, args[0])
	if err != nil {
		return err
	}
	defer p.Close()
	opts := restore.ConfigOptions{Name: o.Name, Define: o.Define, Replace: o.Replace}
	if o.Define {
		conn, err := restore.Connect(ctx, o.Connect)
		if err != nil {
			return err
		}
		defer conn.Disconnect()
		opts.Conn = conn
	}
	res, err := restore.RestoreConfig(ctx, p, opts)
	if err != nil {
		return restoreError(err)
	}
	for _, w := range res.Warnings {
		g.warnf("%s\n", w)
	}
	switch {
	case o.To != "":
		if err := os.WriteFile(o.To, []byte(res.XML), 0o600); err != nil {
			return err
		}
		if !g.JSON {
			g.verbosef("wrote the configuration of %s (%s) to %s\n", res.Name, res.UUID, o.To)
		}
	case res.Defined:
		if !g.JSON {
			g.printf("defined domain %s (%s) from %s\n", res.Name, res.UUID, p.Point.Ref())
		}
	case !g.JSON:
		g.printf("%s", res.XML)
		return nil
	}
	if g.JSON {
		return g.printJSON(struct {
			*restore.ConfigResult
			File string `json:"file,omitempty"`
			XML  string `json:"xml"`
		}{res, o.To, res.XML})
	}
	return nil
}
