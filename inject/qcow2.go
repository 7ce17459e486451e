package inject

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/qcow2"
)

// A qcow2 image is written through qcow2.RW, which keeps refcounts exact
// and appends every cluster it allocates at the end of the file. So the
// bytes of the file it can change below its old end are: the header
// cluster (autoclear bits, a moved refcount table), the L1 table, the
// refcount table and refcount blocks, the L2 tables of the guest clusters
// written, and those clusters where they are written in place. The undo
// file saves exactly those ranges and the file's length; undoing writes
// them back and cuts the file to its old length, which gives the file
// back byte for byte. After the writes, a check confirms that every guest
// cluster written is either where it was or past the old end (so nothing
// the undo file does not cover was touched).

// qcowRefusal says why qcow2.RW would refuse the image, before anything
// is staged (the same conditions, from the header the read-only view
// parsed), or "".
func qcowRefusal(h *qcow2.ParsedHeader) string {
	switch {
	case h.IncompatibleFeatures&qcow2.IncompatDirty != 0:
		return "it is dirty (lazy refcounts not written back); run `qemu-img check -r all` on it first"
	case h.IncompatibleFeatures&qcow2.IncompatCorrupt != 0:
		return "it is marked corrupt; repair it with `qemu-img check -r all` first"
	case h.HasDataFile:
		return "it keeps its data in an external data file"
	case h.ExtendedL2:
		return "it has extended L2 entries (subclusters)"
	case h.Bitmaps != nil && h.Bitmaps.NbBitmaps > 0:
		return "it has persistent dirty bitmaps (incremental backup checkpoints), which writing would leave stale; remove them (`qemu-img bitmap --remove`, or delete the domain's checkpoints) first"
	case h.CryptMethod != qcow2.CryptNone:
		return "it is encrypted"
	}
	return ""
}

// hostRange is a range of the image file.
type hostRange struct{ off, n int64 }

// l2Before is a guest cluster's mapping before the writes.
type l2Before struct {
	entry uint64
	table int64 // its L2 table, 0 if none
}

// qcowSaveSet lists the file ranges to save before writing the guest
// clusters gcs, and the mapping of each as it is now.
func qcowSaveSet(img *qcow2.Image, gcs []int64, fileSize int64) ([]hostRange, map[int64]l2Before, error) {
	h := img.Header()
	cs := h.ClusterSize
	var rs []hostRange
	add := func(off, n int64) {
		if off < fileSize && n > 0 {
			rs = append(rs, hostRange{off, min(n, fileSize-off)})
		}
	}
	add(0, cs)
	add(int64(h.L1TableOffset), int64(h.L1Size)*8)
	rtOff, rtLen := int64(h.RefcountTableOffset), int64(h.RefcountTableClusters)*cs
	add(rtOff, rtLen)
	rt := make([]byte, max(0, min(rtLen, fileSize-rtOff)))
	if _, err := img.File().ReadAt(rt, rtOff); err != nil {
		return nil, nil, fmt.Errorf("%s: reading the refcount table: %w", img.Name(), err)
	}
	for i := 0; i+8 <= len(rt); i += 8 {
		if off := int64(binary.BigEndian.Uint64(rt[i:]) & qcow2.RefcountTableOffsetMask); off != 0 {
			add(off, cs)
		}
	}
	entries := map[int64]l2Before{}
	for _, gc := range gcs {
		ref, err := img.LookupL2(gc * cs)
		if err != nil {
			return nil, nil, err
		}
		entries[gc] = l2Before{ref.Entry, ref.L2TableOffset}
		if ref.L2TableOffset != 0 {
			add(ref.L2TableOffset, cs)
		}
		if ref.Entry&qcow2.L2Compressed == 0 {
			if host := int64(ref.Entry & qcow2.L2OffsetMask); host != 0 {
				add(host, cs)
			}
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].off < rs[j].off })
	var out []hostRange
	for _, r := range rs {
		if k := len(out); k > 0 && r.off <= out[k-1].off+out[k-1].n {
			out[k-1].n = max(out[k-1].n, r.off+r.n-out[k-1].off)
			continue
		}
		out = append(out, r)
	}
	return out, entries, nil
}

// guestClusters lists the guest clusters the changes touch.
func guestClusters(chs []change, base, cs int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, c := range chs {
		for gc := (base + c.Off) / cs; gc <= (base+c.Off+c.Len-1)/cs; gc++ {
			if !seen[gc] {
				seen[gc] = true
				out = append(out, gc)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// commitQcow2 writes into a qcow2 image through qcow2.RW with the undo
// file saving the host ranges first.
func (v *volume) commitQcow2(ctx context.Context, hdr *undoHeader, undoPath string, chs []change, checks []check, need int64) (err error) {
	qimg, ok := v.img.(*qcow2.Image)
	if !ok {
		return fmt.Errorf("%s: not opened as qcow2", v.disk.path)
	}
	id, err := imageID(v.disk.path, "qcow2", v.img.Size())
	if err != nil {
		return err
	}
	hdr.Image = id
	cs := qimg.Header().ClusterSize
	gcs := guestClusters(chs, v.off, cs)
	ranges, before, err := qcowSaveSet(qimg, gcs, id.FileSize)
	if err != nil {
		return err
	}
	var saved int64
	for _, r := range ranges {
		saved += r.n
	}
	if err := checkSpace(filepath.Dir(undoPath), saved+need/64, "the undo file"); err != nil {
		return err
	}
	// New clusters: one per guest cluster, its L2 table, refcount blocks.
	if err := checkSpace(filepath.Dir(v.disk.path), (int64(len(gcs))*2+16)*cs, "the qcow2 image"); err != nil {
		return err
	}
	rf, err := os.Open(v.disk.path)
	if err != nil {
		return err
	}
	defer rf.Close()
	u, err := createUndo(undoPath, hdr)
	if err != nil {
		return err
	}
	var rw *qcow2.RW
	written := false
	defer func() {
		if err == nil {
			return
		}
		if rw != nil {
			rw.Close()
		}
		if !written {
			u.abort()
			return
		}
		u.close()
		if errors.Is(err, errCrash) {
			return
		}
		err = v.rollbackQcow2(undoPath, err)
	}()

	// The host ranges, with their bytes.
	type hostRec struct {
		idx int
		hostRange
		old [32]byte // of the bytes; for the header, with autoclear as zeros
	}
	var hrecs []hostRec
	buf := make([]byte, recordChunk)
	for _, r := range ranges {
		for done := int64(0); done < r.n; {
			n := min(recordChunk, r.n-done)
			b := buf[:n]
			if _, err := rf.ReadAt(b, r.off+done); err != nil {
				return fmt.Errorf("%s: reading %d bytes at %d: %w", v.disk.path, n, r.off+done, err)
			}
			sum := sha256.Sum256(b)
			if err := u.add(spaceHost, r.off+done, b, sum, [32]byte{}, n); err != nil {
				return err
			}
			hrecs = append(hrecs, hostRec{u.recs - 1, hostRange{r.off + done, n}, autoclearMasked(b, r.off+done)})
			done += n
		}
	}
	// The guest ranges, with the hashes of their old bytes; the new
	// ones go in the commit record.
	type guestRec struct {
		idx int
		off int64
	}
	var grecs []guestRec
	old := make([]byte, recordChunk)
	err = forChunks(ctx, chs, v.off, func(off int64, data []byte) error {
		o := old[:len(data)]
		if _, err := qimg.ReadAt(o, off); err != nil {
			return fmt.Errorf("%s: reading guest offset %d: %w", v.disk.path, off, err)
		}
		grecs = append(grecs, guestRec{u.recs, off})
		return u.add(spaceGuest, off, nil, sha256.Sum256(o), [32]byte{}, int64(len(data)))
	})
	if err != nil {
		return err
	}
	if err := u.sync(); err != nil {
		return err
	}

	// qcow2.RW takes QEMU's write locks on its own descriptor and refuses
	// an image another descriptor holds, ours included: hand over. It may
	// clear autoclear bits in the header as it opens: from here on, a
	// failure rolls back.
	written = true
	v.t.locks[v.idx].release()
	if rw, err = qcow2.OpenRWWith(v.disk.path, qcow2.RWOptions{OpenBacking: imageOpener}); err != nil {
		return err
	}
	// Nothing may have changed in the instant between the two locks.
	for _, hr := range hrecs {
		b := buf[:hr.n]
		if _, err := rf.ReadAt(b, hr.off); err != nil {
			return err
		}
		if autoclearMasked(b, hr.off) != hr.old {
			return refusef("%s changed while it was being opened for writing", v.disk.path)
		}
	}
	after := map[int]string{}
	gi := 0
	err = forChunks(ctx, chs, v.off, func(off int64, data []byte) error {
		if err := hook("qcow2-write"); err != nil {
			return err
		}
		if _, err := rw.WriteAt(data, off); err != nil {
			return err
		}
		s := sha256.Sum256(data)
		after[grecs[gi].idx] = hex.EncodeToString(s[:])
		gi++
		return nil
	})
	if err != nil {
		return err
	}
	if err := rw.Flush(); err != nil {
		return err
	}
	if err := hook("before-verify"); err != nil {
		return err
	}
	if err := v.verify(rw, checks); err != nil {
		return err
	}
	// Everything that needs the file as written is done while rw still
	// holds the lock (it writes through: the file has it all).
	if err := checkAppendOnly(v.disk.path, gcs, before, id.FileSize, cs); err != nil {
		return err
	}
	for _, hr := range hrecs {
		b := buf[:hr.n]
		if _, err := rf.ReadAt(b, hr.off); err != nil {
			return err
		}
		s := sha256.Sum256(b)
		after[hr.idx] = hex.EncodeToString(s[:])
	}
	st, err := rf.Stat()
	if err != nil {
		return err
	}
	if err := rw.Close(); err != nil {
		rw = nil
		return err
	}
	rw = nil
	if err := u.commit(&undoCommit{Time: v.t.o.Now().UTC(), FileSize: st.Size(), After: after}); err != nil {
		return err
	}
	// Take the lock back until the run ends. The image is complete and
	// consistent: if another process took it in the instant since rw
	// closed, that is no reason to undo.
	if lk, err := lockImage(v.disk.path, false); err == nil {
		v.t.locks[v.idx] = lk
	} else {
		v.t.o.notify("warning: %v", err)
	}
	return u.close()
}

// autoclearMasked hashes b (file bytes at off) with the header's
// autoclear field (bytes 88-95, which qcow2.RW clears on open) as zeros.
func autoclearMasked(b []byte, off int64) [32]byte {
	if off > 88 || off+int64(len(b)) < 96 {
		return sha256.Sum256(b)
	}
	c := append([]byte(nil), b...)
	clear(c[88-off : 96-off])
	return sha256.Sum256(c)
}

// checkAppendOnly confirms the writer kept to what the undo file covers:
// every guest cluster written is where it was or past the old end of the
// file, and so is its L2 table.
func checkAppendOnly(path string, gcs []int64, before map[int64]l2Before, oldSize, cs int64) error {
	im, err := imagefmt.OpenWith(path, imagefmt.Options{Format: imagefmt.FormatQcow2})
	if err != nil {
		return err
	}
	defer im.Close()
	img, ok := im.(*qcow2.Image)
	if !ok {
		return fmt.Errorf("%s: not opened as qcow2", path)
	}
	for _, gc := range gcs {
		ref, err := img.LookupL2(gc * cs)
		if err != nil {
			return err
		}
		b := before[gc]
		host := int64(ref.Entry & qcow2.L2OffsetMask)
		oldHost := int64(b.entry & qcow2.L2OffsetMask)
		if b.entry&qcow2.L2Compressed != 0 {
			oldHost = -1
		}
		switch {
		case ref.Entry&qcow2.L2Compressed != 0,
			host != 0 && host != oldHost && host < oldSize:
			return fmt.Errorf("%s: guest cluster %d now maps to host offset %d, which the undo file does not cover", path, gc, host)
		case ref.L2TableOffset != 0 && ref.L2TableOffset != b.table && ref.L2TableOffset < oldSize:
			return fmt.Errorf("%s: guest cluster %d now has its L2 table at %d, which the undo file does not cover", path, gc, ref.L2TableOffset)
		}
	}
	return nil
}

func (v *volume) rollbackQcow2(undoPath string, cause error) error {
	lk := v.t.locks[v.idx]
	if lk == nil || lk.f == nil {
		var err error
		if lk, err = lockImage(v.disk.path, true); err != nil {
			return fmt.Errorf("%w; rolling back FAILED: %v; the undo file %s holds the old bytes: run `vmmount inject --undo %s` before using the VM", cause, err, undoPath, undoPath)
		}
		v.t.locks[v.idx] = lk
	}
	f, err := os.OpenFile(v.disk.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w; rolling back FAILED: %v; run `vmmount inject --undo %s` before using the VM", cause, err, undoPath)
	}
	defer f.Close()
	return v.rollback(undoPath, f, cause)
}
