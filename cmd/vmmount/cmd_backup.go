package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/internal/progress"
)

type backupOptions struct {
	Connect         string
	Mode            string
	Shutdown        bool
	ShutdownTimeout time.Duration
	RequireQuiesce  bool
	Disks           []string
	Name            string
	Config          string
	Format          string
	Compress        string
	Full            bool
	MaxChain        int
	ScratchDir      string
}

func (o *backupOptions) AddFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVarP(&o.Connect, "connect", "c", backup.DefaultURI, "libvirt URI of this host's hypervisor")
	f.StringVar(&o.Mode, "mode", "", "offline, pause or snapshot (default: offline when the VM is shut off, else snapshot)")
	f.BoolVar(&o.Shutdown, "shutdown", false, "offline mode: shut a running VM down (ACPI), back it up, start it again")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", backup.DefaultShutdownTimeout, "how long --shutdown waits for the VM to shut off")
	f.BoolVar(&o.RequireQuiesce, "require-quiesce", false, "snapshot mode: fail when the guest agent cannot freeze the filesystems, instead of a crash-consistent point")
	f.StringArrayVar(&o.Disks, "disk", nil, "libvirt: disks to back up (vda,vdb; default all); image files: TARGET=PATH, repeated")
	f.StringVar(&o.Name, "name", "", "back up image files (--disk TARGET=PATH) as the VM NAME, without libvirt")
	f.StringVar(&o.Config, "config", "", "with --name: a configuration file saved with the point (a domain XML, say)")
	f.StringVar(&o.Format, "format", "qcow2", "image format of the point: qcow2 (incrementals) or raw (sparse, always full)")
	f.StringVar(&o.Compress, "compress", "", "compress qcow2 clusters: zstd (or zlib), on all cores")
	f.BoolVar(&o.Full, "full", false, "store a full point even when an incremental is possible")
	f.IntVar(&o.MaxChain, "max-chain", backup.DefaultMaxChain, "start a new full point when the chain of incrementals reaches this length")
	f.StringVar(&o.ScratchDir, "scratch-dir", backup.DefaultScratchDir, "live backups: directory for the NBD socket and QEMU's scratch files")
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var o backupOptions
	c := &cobra.Command{
		Use:   "backup [flags] DOMAIN | backup --name NAME --disk TARGET=PATH... [--config FILE]",
		Short: "Back up a VM (libvirt domain or image files) into a new restore point",
		Long: `Back up a libvirt domain of this host, by name or UUID, into a new restore
point of the repository (--repo): one qcow2 (or sparse raw) image per disk,
the domain XML, and the NVRAM, kernel and initrd it boots with.

Modes:
  offline   the VM must be shut off; --shutdown shuts a running VM down
            (ACPI power button), backs it up and starts it again
  pause     the VM is suspended for the copy and resumed; the pause is reported
  snapshot  (default for a running VM) the guest's filesystems are frozen
            through the QEMU guest agent while the libvirt backup job starts,
            then thawed at once; the copy is read from that point in time
            while the VM runs on. Without an agent the point is
            crash-consistent (a warning), or the backup fails with
            --require-quiesce.

The next point of a VM stores only what changed, as a qcow2 overlay on the
previous point's image: changes come from libvirt checkpoints (dirty bitmaps)
when the VM runs, otherwise from comparing the SHA-256 of every 64 KiB block
with the previous point. --full or a chain of --max-chain points starts a
new full point. Pass-through LUNs, CD-ROMs, floppies and shareable disks are
skipped with a message.

Without libvirt, --name NAME --disk vda=PATH [--disk vdb=PATH] backs up image
files of a VM that is shut off (images a running QEMU uses are refused).

Whatever fails or interrupts a backup (Ctrl-C included), the VM is resumed
and thawed (or started again after --shutdown), the backup job ended, and no
partial point is left. A backup killed outright (kill -9, the OOM killer) is
healed at once by a guard process it starts, or else by the next backup of
the VM.`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), g, &o, args)
		},
	}
	o.AddFlags(c)
	return c
}

func runBackup(ctx context.Context, g *globalOptions, o *backupOptions, args []string) error {
	src, err := o.source(g, args)
	if err != nil {
		return err
	}
	if d, ok := src.(*backup.Domain); ok {
		defer d.Close()
		defer startGuard(g, o, d.Name)()
	}
	opts := backup.Options{Format: strings.ToLower(o.Format), Compress: strings.ToLower(o.Compress),
		Full: o.Full, MaxChain: o.MaxChain, Tool: "vmmount " + version}
	switch opts.Format {
	case "qcow2", "raw":
	default:
		return usageError{fmt.Errorf("--format %q: want qcow2 or raw", o.Format)}
	}
	switch opts.Compress {
	case "", "zstd", "zlib":
	default:
		return usageError{fmt.Errorf("--compress %q: want zstd or zlib", o.Compress)}
	}
	if opts.Format == "raw" && opts.Compress != "" {
		return usageError{errors.New("--compress needs --format qcow2")}
	}
	if o.MaxChain < 1 {
		return usageError{fmt.Errorf("--max-chain %d: want 1 or more", o.MaxChain)}
	}
	if g.showProgress() {
		opts.Progress = progress.NewBar(g.stderr)
	}
	r, err := repo.OpenOrInit(g.Repo)
	if err != nil {
		return err
	}
	res, err := backup.Run(ctx, r, src, opts)
	if res != nil {
		for _, c := range res.Cleaned {
			g.verbosef("cleaned up after an interrupted run: %s\n", c)
		}
		for _, w := range res.Warnings {
			g.warnf("%s\n", w)
		}
	}
	if err != nil {
		if res == nil || res.Point == nil {
			return backupError(err)
		}
		// Published, but putting the VM back failed: say both.
		g.printPoint(res.Point)
		return err
	}
	if g.JSON {
		return g.printJSON(res.Point.Manifest)
	}
	g.printPoint(res.Point)
	return nil
}

// backupError gives refusals their exit code.
func backupError(err error) error {
	switch {
	case errors.Is(err, backup.ErrVMState), errors.Is(err, repo.ErrLocked):
		return refusedError{err}
	}
	return err
}

// source builds the backup source from the flags.
func (o *backupOptions) source(g *globalOptions, args []string) (backup.Source, error) {
	if o.Name != "" {
		if len(args) > 0 {
			return nil, usageError{errors.New("give either a DOMAIN or --name with --disk TARGET=PATH, not both")}
		}
		src := &backup.Images{Name: o.Name, Config: o.Config}
		for _, d := range o.Disks {
			target, path, ok := strings.Cut(d, "=")
			if !ok || target == "" || path == "" {
				return nil, usageError{fmt.Errorf("--disk %q: with --name, each disk is TARGET=PATH", d)}
			}
			src.Disks = append(src.Disks, backup.ImageDisk{Target: target, Path: path})
		}
		if len(src.Disks) == 0 {
			return nil, usageError{errors.New("--name needs at least one --disk TARGET=PATH")}
		}
		if o.Mode != "" || o.Shutdown || o.RequireQuiesce {
			return nil, usageError{errors.New("--mode, --shutdown and --require-quiesce apply to libvirt domains")}
		}
		return src, nil
	}
	if len(args) != 1 {
		return nil, usageError{errors.New("name the domain to back up, or use --name NAME --disk TARGET=PATH")}
	}
	if o.Config != "" {
		return nil, usageError{errors.New("--config applies to --name (a domain's configuration is read from libvirt)")}
	}
	switch o.Mode {
	case backup.ModeAuto, backup.ModeOffline, backup.ModePause, backup.ModeSnapshot:
	default:
		return nil, usageError{fmt.Errorf("--mode %q: want offline, pause or snapshot", o.Mode)}
	}
	if o.Shutdown && o.Mode != backup.ModeOffline {
		return nil, usageError{errors.New("--shutdown goes with --mode offline")}
	}
	src := &backup.Domain{URI: o.Connect, Name: args[0], Mode: o.Mode, Shutdown: o.Shutdown,
		ShutdownTimeout: o.ShutdownTimeout, RequireQuiesce: o.RequireQuiesce, ScratchDir: o.ScratchDir,
		Notify: func(msg string) { g.verbosef("%s\n", msg) }}
	for _, d := range o.Disks {
		if strings.Contains(d, "=") {
			return nil, usageError{fmt.Errorf("--disk %q: TARGET=PATH is for --name; for a domain give targets (vda,vdb)", d)}
		}
		for _, t := range strings.Split(d, ",") {
			if t = strings.TrimSpace(t); t != "" {
				src.Disks = append(src.Disks, t)
			}
		}
	}
	return src, nil
}

// printPoint says what a backup stored.
func (g *globalOptions) printPoint(p *repo.Point) {
	m := p.Manifest
	kind := "full point"
	if m.Parent != "" {
		kind = "incremental point on " + m.Parent
	}
	g.printf("%s: %s (%s, %s) in %s\n", p.Ref(), kind, m.Mode, m.Consistency, time.Duration(m.DurationMS)*time.Millisecond)
	if m.FreezeMS > 0 {
		g.printf("  filesystems frozen for %s\n", time.Duration(m.FreezeMS)*time.Millisecond)
	}
	if m.PauseMS > 0 {
		g.printf("  VM paused for %s\n", time.Duration(m.PauseMS)*time.Millisecond)
	}
	for _, d := range m.Disks {
		g.printf("  %s: %s virtual, %s changed (%s), %s stored in %s\n", d.Target, progress.Bytes(d.VirtualSize),
			progress.Bytes(d.ChangedBytes), d.Changes, progress.Bytes(d.StoredBytes), d.Image)
	}
}
