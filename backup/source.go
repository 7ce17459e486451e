package backup

import (
	"context"

	"github.com/vmmount/vmmount/backup/repo"
)

// A Source is what a backup captures: a libvirt domain (Domain) or image
// files (Images).
type Source interface {
	// Open finds the VM (connects to libvirtd, looks the domain up) and
	// identifies it; its name is the repository directory.
	Open(ctx context.Context) (repo.VMInfo, error)
	// Begin makes the VM's disks readable in a consistent state (shut
	// off, paused, or a point-in-time copy started) and returns the
	// session. On error it has undone whatever it did.
	Begin(ctx context.Context, req CaptureRequest) (Session, error)
}

// CaptureRequest is what the engine asks of a source.
type CaptureRequest struct {
	// Parent is the point the new one will be an incremental of, nil for
	// a full. A source that tracks changes (libvirt checkpoints) offers
	// changed ranges for the disks whose parent checkpoint it still has.
	Parent *repo.Point
	// Checkpoint names the checkpoint the new point should start, if the
	// source can track changes.
	Checkpoint string
	// Ready, when set, waits for the parent's check (which runs while the
	// source prepares) and returns its error. A source calls it before it
	// disturbs the VM (shutdown, pause, freeze), and gives up on an error:
	// a damaged repository never costs the VM a freeze or a reboot.
	Ready func() error
}

// ready is r.Ready's answer, nil without one.
func (r CaptureRequest) ready() error {
	if r.Ready == nil {
		return nil
	}
	return r.Ready()
}

// Session is a capture in progress.
type Session interface {
	// Mode and Consistency are the repository's Mode* and Consistency*
	// values reached.
	Mode() string
	Consistency() string
	Disks() []*CaptureDisk
	// SaveConfig saves the VM configuration into out (the partial point),
	// which describes it for the manifest.
	SaveConfig(ctx context.Context, out *configOut) error
	// End releases the VM: ends the backup job, thaws, resumes, starts it
	// again. It is called exactly once, on every path, with a context that
	// is not cancelled; ok says whether every disk was copied (if not, a
	// checkpoint begun for the point is deleted).
	End(ctx context.Context, ok bool) error
	// Committed is called once the point is published (drop checkpoints
	// older than the new one). Its errors are warnings.
	Committed(ctx context.Context) error
	// Report is what happened, for the manifest and the caller.
	Report() SessionReport
}

// SessionReport carries a session's timings and warnings.
type SessionReport struct {
	PauseMS  int64 // how long the VM was paused (pause mode)
	FreezeMS int64 // how long filesystems were frozen (snapshot mode)
	Warnings []string
	// Shutdown is set when the VM was shut down for the backup and
	// started again (offline mode with --shutdown).
	ShutdownMS int64
}

// CaptureDisk is one disk of a session.
type CaptureDisk struct {
	Target       string // vda
	Source       string // path, volume or network name
	SourceFormat string
	Reader       diskReader
	// Allocated lists, sorted, the ranges of the disk that may hold data;
	// the rest reads as zeros.
	Allocated func(off, n int64) ([]Range, error)
	// Changed, when set, lists the ranges changed since Request.Parent's
	// checkpoint for this disk; everything else is unchanged.
	Changed func(off, n int64) ([]Range, error)
	// Checkpoint is the checkpoint begun for the disk with this point, ""
	// if none.
	Checkpoint string
}
