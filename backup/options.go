package backup

import (
	"errors"
	"fmt"
	"time"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/internal/progress"
)

// DefaultMaxChain is the longest chain of points (a full plus incrementals)
// before a backup starts a new full one: long chains cost every read of the
// newest point a lookup per layer, and a damaged layer spoils all points
// above it.
const DefaultMaxChain = 14

// Options control a backup.
type Options struct {
	// Format of the images: "qcow2" (default) or "raw" (sparse, always a
	// full point).
	Format string
	// Compress qcow2 clusters with "zstd" (or "zlib"); "" stores them as
	// they are.
	Compress string
	// Full makes a full point even when an incremental is possible.
	Full bool
	// MaxChain bounds the chain length (0: DefaultMaxChain); a backup
	// whose parent ends a chain this long is a full one.
	MaxChain int
	// Progress receives the bytes of each disk done; nil for none.
	Progress progress.Progress
	// Workers hashing and compressing; 0: one per core.
	Workers int
	// Tool is recorded in the manifest ("vmmount 1.2").
	Tool string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Errors; test with errors.Is.
var (
	// ErrParentCorrupt means the point an incremental would be chained on
	// failed its checks. It wraps repo.ErrCorrupt.
	ErrParentCorrupt = fmt.Errorf("previous restore point damaged: %w", repo.ErrCorrupt)
	// ErrVMState means the VM is not in a state the requested mode allows
	// (running for an offline backup without --shutdown, say).
	ErrVMState = errors.New("VM state does not allow this backup")
	// ErrQuiesce means the guest's filesystems could not be frozen and
	// quiescing was required.
	ErrQuiesce = errors.New("guest filesystems could not be frozen")
	// ErrNoDisks means nothing is left to back up.
	ErrNoDisks = errors.New("no disk to back up")
)

func (o *Options) normalize() error {
	switch o.Format {
	case "":
		o.Format = imagefmt.FormatQcow2
	case imagefmt.FormatQcow2, imagefmt.FormatRaw:
	default:
		return fmt.Errorf("image format %q: want qcow2 or raw", o.Format)
	}
	switch o.Compress {
	case "", "zstd", "zlib":
	default:
		return fmt.Errorf("compression %q: want zstd or zlib", o.Compress)
	}
	if o.Format == imagefmt.FormatRaw && o.Compress != "" {
		return errors.New("raw images cannot be compressed")
	}
	if o.MaxChain <= 0 {
		o.MaxChain = DefaultMaxChain
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Result describes a published point.
type Result struct {
	Point    *repo.Point
	Warnings []string
	// Cleaned lists leftovers of interrupted runs that were removed first.
	Cleaned []string
}
