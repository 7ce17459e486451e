package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/imagefmt"
)

// Run captures src into a new restore point of r and publishes it. It holds
// the VM's lock throughout, first removes what interrupted runs left, and
// on any error (or a cancelled ctx) leaves the VM as it found it and no
// partial point behind.
func Run(ctx context.Context, r *repo.Repo, src Source, opts Options) (res *Result, err error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	vm, err := src.Open(ctx)
	if err != nil {
		return nil, err
	}
	lock, err := r.LockVM(vm.Name)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	res = &Result{}
	if res.Cleaned, err = r.CleanPartial(vm.Name); err != nil {
		return nil, fmt.Errorf("removing leftovers of an interrupted backup: %w", err)
	}
	folded, err := recoverFolds(ctx, r, vm.Name)
	res.Cleaned = append(res.Cleaned, folded...)
	if err != nil {
		return nil, err
	}
	parent, chainLen, whyFull, err := chooseParent(r, vm.Name, &opts)
	if err != nil {
		return nil, err
	}

	start := opts.Now()
	part, err := r.NewPartial(vm.Name, start)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			part.Abort()
		}
	}()

	req := CaptureRequest{Parent: parent}
	if opts.Format == imagefmt.FormatQcow2 {
		req.Checkpoint = "vmmount-" + part.ID
	}
	// The parent is checked (every mapping table of its chain is read)
	// while the source prepares the capture; the source waits for the
	// check before it disturbs the VM (req.Ready).
	var pc struct {
		hs  parentHashes
		err error
	}
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		if parent != nil {
			pc.hs, pc.err = checkParent(parent)
		}
	}()
	req.Ready = func() error { <-checked; return pc.err }
	sess, err := src.Begin(ctx, req)
	if err != nil {
		<-checked
		return nil, err
	}
	ended := false
	defer func() {
		if !ended {
			if eerr := sess.End(context.WithoutCancel(ctx), false); eerr != nil {
				err = errors.Join(err, eerr)
			}
		}
	}()
	if err := req.Ready(); err != nil {
		return nil, err
	}

	m := &repo.Manifest{
		VM:          vm,
		Time:        start.UTC(),
		Mode:        sess.Mode(),
		Consistency: sess.Consistency(),
		ChainLength: 1,
		Tool:        opts.Tool,
	}
	if len(sess.Disks()) == 0 {
		return nil, ErrNoDisks
	}
	// The configuration is saved while the disks are copied.
	cfg := &configOut{dir: part.Dir}
	if prev, err := r.Latest(vm.Name); err == nil {
		cfg.prev = prev
	}
	cfgc := make(chan error, 1)
	go func() { cfgc <- sess.SaveConfig(ctx, cfg) }()
	usedParent := false
	var copyErr error
	for _, cd := range sess.Disks() {
		d, used, err := captureDisk(ctx, part, cd, parent, pc.hs, &opts)
		if err != nil {
			copyErr = fmt.Errorf("disk %s (%s): %w", cd.Target, cd.Source, err)
			break
		}
		usedParent = usedParent || used
		m.Disks = append(m.Disks, *d)
	}
	cfgErr := <-cfgc
	if copyErr != nil {
		return nil, copyErr
	}
	if cfgErr != nil {
		return nil, fmt.Errorf("saving the VM configuration: %w", cfgErr)
	}
	m.Config = cfg.c

	// The copy is complete: release the VM before the (fsync-heavy)
	// publication. An error here is the VM's, not the point's: the point
	// is still published and the error returned.
	ended = true
	endErr := sess.End(context.WithoutCancel(ctx), true)
	rep := sess.Report()
	m.PauseMS, m.FreezeMS = rep.PauseMS, rep.FreezeMS
	m.Warnings = rep.Warnings
	if usedParent {
		m.Parent = parent.ID
		m.ChainLength = chainLen + 1
	} else if parent != nil {
		whyFull = "no disk could be chained on " + parent.ID
	}
	if whyFull != "" && parent == nil && whyFull != "first point of the VM" {
		m.Warnings = append(m.Warnings, "full point: "+whyFull)
	}
	m.DurationMS = opts.Now().Sub(start).Milliseconds()
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(err, endErr)
	}
	pt, err := part.Publish(m)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("publishing %s/%s: %w", vm.Name, part.ID, err), endErr)
	}
	res.Point = pt
	res.Warnings = m.Warnings
	if cerr := sess.Committed(context.WithoutCancel(ctx)); cerr != nil {
		res.Warnings = append(res.Warnings, cerr.Error())
	}
	if endErr != nil {
		return res, fmt.Errorf("restore point %s published, but: %w", pt.Ref(), endErr)
	}
	return res, nil
}

// captureDisk copies one disk into the partial point and returns its
// manifest entry, and whether it is an overlay on the parent.
func captureDisk(ctx context.Context, part *repo.Partial, cd *CaptureDisk, parent *repo.Point, hs parentHashes, opts *Options) (*repo.Disk, bool, error) {
	size := cd.Reader.Size()
	pd, _, err := parentFor(parent, hs, cd.Target, size)
	if err != nil {
		return nil, false, err
	}
	if opts.Format == imagefmt.FormatRaw {
		pd = nil
	}
	plan := ReadPlan{Ranges: cd.Allocated}
	changes := repo.ChangesFull
	if pd != nil {
		changes = repo.ChangesHashes
		if cd.Changed != nil {
			plan = ReadPlan{Ranges: cd.Changed, Inherit: true}
			changes = repo.ChangesCheckpoint
		}
	}
	ext := "." + opts.Format
	d := &repo.Disk{
		Target:        cd.Target,
		Source:        cd.Source,
		SourceFormat:  cd.SourceFormat,
		VirtualSize:   size,
		Image:         cd.Target + ext,
		Format:        opts.Format,
		Compression:   opts.Compress,
		Hashes:        cd.Target + ".blockhashes",
		HashBlockSize: blockSize,
		Checkpoint:    cd.Checkpoint,
		Changes:       changes,
	}
	spec := copySpec{src: cd.Reader, plan: plan, parent: pd, out: part.Path(d.Image), format: opts.Format,
		compress: opts.Compress, workers: opts.Workers, prog: opts.Progress}
	if pd != nil {
		d.Backing = pd.backing
	}
	res, err := copyDisk(ctx, spec)
	if err != nil {
		return nil, false, err
	}
	if err := res.hashes.Write(part.Path(d.Hashes)); err != nil {
		return nil, false, err
	}
	d.ContentSHA256 = res.hashes.Digest()
	d.ChangedBytes = res.changed
	d.ImageSize = res.imageSize
	d.StoredBytes = res.allocated
	return d, pd != nil, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
