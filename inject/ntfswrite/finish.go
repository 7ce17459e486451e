package ntfswrite

import (
	"errors"
	"fmt"
	"sort"
)

// op runs a changing operation. An error after the operation began
// changing the transaction leaves it failed: Finish then refuses, and
// nothing may be written (the caller discards the transaction). Errors of
// the checks before (a name that exists, a refusal) leave it usable.
func (f *FS) op(fn func() error) error {
	if f.finished {
		return errors.New("ntfswrite: transaction already finished")
	}
	if f.failed != nil {
		return fmt.Errorf("ntfswrite: transaction failed earlier: %w", f.failed)
	}
	f.began = false
	err := fn()
	if err != nil && f.began {
		f.failed = err
	}
	return err
}

// begin marks the start of an operation's changes.
func (f *FS) begin() { f.began = true }

// Finish ends the transaction: clusters freed are released in $Bitmap,
// index blocks and MFT records are encoded (with their fixups; the first
// records in $MFTMirr too) and $LogFile is emptied. Nothing may be
// changed after it.
func (f *FS) Finish() error {
	if f.finished {
		return nil
	}
	if f.failed != nil {
		return fmt.Errorf("ntfswrite: transaction failed: %w", f.failed)
	}
	changed := len(f.st.mod) > 0 || len(f.st.data) > 0
	for _, r := range f.recs {
		changed = changed || r.dirty
	}
	for _, x := range f.dirs {
		for _, n := range x.blocks {
			changed = changed || n.dirty
		}
	}
	if !changed {
		f.finished = true
		return nil
	}
	// $Volume's record is written by every transaction (its update
	// sequence number advances), as the superblock is on ext: an undo
	// file saved before a later transaction then no longer matches the
	// volume and is refused, so injections are undone newest first.
	vr, err := f.record(recVolume)
	if err != nil {
		return err
	}
	vr.dirty = true
	if len(f.freed) > 0 {
		bm, err := f.sysData(recBitmap)
		if err != nil {
			return err
		}
		for _, r := range f.freed {
			if err := f.setBits(bm, r.LCN, r.N, false); err != nil {
				return err
			}
		}
	}
	if err := f.writeBlocks(); err != nil {
		return err
	}
	if err := f.writeRecords(); err != nil {
		return err
	}
	if err := f.resetLogFile(); err != nil {
		return err
	}
	if len(f.logFill) > 0 {
		f.event(Event{Op: OpLogReset, Rec: recLogFile, Note: "emptied (0xFF) so that Windows starts a new log"})
	}
	f.finished = true
	return nil
}

// Changes lists what the transaction writes, sorted by offset: metadata
// with its bytes, runs of file clusters with their source, and the
// $LogFile reset as 0xFF fills. Finish must have been called.
func (f *FS) Changes() ([]Change, error) {
	if !f.finished {
		return nil, errors.New("ntfswrite: Changes before Finish")
	}
	out := append(f.st.changes(f.clusterSize), f.logFill...)
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	return out, nil
}

// ClusterSize is the volume's cluster size.
func (f *FS) ClusterSize() int64 { return f.clusterSize }

// Label names the volume in messages ("ntfs p2").
func (f *FS) Label() string { return f.label }
