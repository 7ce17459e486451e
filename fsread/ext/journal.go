package ext

import (
	"fmt"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/ext/jbd2"
)

// replayJournal replays the internal journal into an overlay (package
// jbd2 finds the blocks), then reloads the superblock and the group
// descriptors through it: the kernel's recovery writes them too, and the
// view must be the one after recovery.
func (f *FS) replayJournal() error {
	n, err := f.inode(uint64(f.sb.JournalInum))
	if err != nil {
		return fmt.Errorf("journal inode: %w", err)
	}
	fl, err := f.openFile(n)
	if err != nil || fl.m == nil {
		return fmt.Errorf("journal inode %d: cannot map its blocks: %v", n.ino, err)
	}
	res, err := jbd2.Replay(fl, n.size, f.bs)
	if err != nil {
		return err
	}
	src := make(map[uint64]ovBlock, len(res.Blocks))
	for blk, b := range res.Blocks {
		if blk >= f.blocks {
			f.warn(fmt.Sprintf("journal holds block %d, outside the volume; ignored", blk))
			continue
		}
		r, err := fl.m.mapBlock(b.Log)
		if err != nil || r.kind != runData {
			return fmt.Errorf("journal block %d is not mapped: %v", b.Log, err)
		}
		src[blk] = ovBlock{phys: r.phys, escaped: b.Escaped}
	}
	for _, w := range res.Warnings {
		f.warn(w)
	}
	if len(src) == 0 {
		f.warn("journal needed recovery but held no committed transactions")
		return nil
	}
	oldSB := f.sb
	f.dev.ov = newOverlay(src)
	f.cache.clear()
	f.dirs.clear()
	if err := f.reload(); err != nil {
		// Keep the pre-replay view rather than none.
		f.dev.ov = nil
		f.cache.clear()
		f.sb = oldSB
		f.useSuper(oldSB)
		return fmt.Errorf("after replay: %w", err)
	}
	f.warn(fmt.Sprintf("journal needed recovery: replayed %d transactions (%d blocks) in memory", res.Transactions, len(src)))
	return nil
}

// reload rereads the superblock and group descriptors after a replay.
func (f *FS) reload() error {
	if f.gdtBase == f.firstData+1 || f.gdtBase == 2 {
		raw := make([]byte, disklayout.SuperblockSize)
		if err := f.dev.readAt(raw, disklayout.SuperblockOffset); err != nil {
			return err
		}
		sb, why := f.checkSuper(raw, int(f.sb.LogBlockSize))
		if why != "" {
			return f.corrupt(0, disklayout.SuperblockOffset, "replayed superblock: %s", why)
		}
		if err := f.useSuper(sb); err != nil {
			return err
		}
	}
	return f.loadGroups()
}
