package inject

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vmmount/vmmount/imagefmt"
)

// UndoOptions change how Undo works.
type UndoOptions struct {
	// URI is the libvirt connection to check the domain with; "" takes
	// the one the undo file recorded.
	URI string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// UndoResult says what Undo did.
type UndoResult struct {
	Image  string `json:"image"`
	Volume string `json:"volume"`
	// Ranges and Bytes restored.
	Ranges int   `json:"ranges"`
	Bytes  int64 `json:"bytes"`
	// Interrupted says the injection never completed (the undo file has
	// no commit record): what it had written is undone.
	Interrupted bool `json:"interrupted,omitempty"`
	// AlreadyUndone says the image already had its previous bytes.
	AlreadyUndone bool   `json:"already_undone,omitempty"`
	Description   string `json:"description,omitempty"`
}

// Undo restores the bytes an injection overwrote, from its undo file: the
// image becomes byte for byte what it was (a qcow2 image is also cut back
// to its old length). It refuses when the VM runs or the image is in use,
// and when the image changed since the injection (ErrChanged): restoring
// old bytes under later writes would corrupt the filesystem.
func Undo(ctx context.Context, path string, o UndoOptions) (*UndoResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	u, err := readUndo(path)
	if err != nil {
		return nil, err
	}
	h := u.header
	res := &UndoResult{Image: h.Image.Path, Volume: h.Volume, Interrupted: u.commit == nil, Description: h.Description}
	uri := o.URI
	if uri == "" {
		uri = h.URI
	}
	var hv *hypervisor
	if h.Domain != "" {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		hv, err = dialLibvirt(c, uri)
		cancel()
		if err == nil {
			defer hv.close()
			if dom, err := hv.lookupDomain(h.Domain); err == nil {
				if err := hv.checkShutOff(dom); err != nil {
					return res, err
				}
			}
		} else {
			hv = nil
		}
	}
	lk, err := lockImage(h.Image.Path, true)
	if err != nil {
		return res, err
	}
	defer lk.release()
	if err := checkLoopDevices([]string{h.Image.Path}); err != nil {
		return res, err
	}
	if err := checkNotUsed(ctx, hv, uri, []string{h.Image.Path}, h.Domain); err != nil {
		return res, err
	}
	for _, r := range u.records {
		limit := h.Image.VirtualSize
		if r.Space == spaceHost || h.Image.Format == imagefmt.FormatRaw {
			limit = h.Image.FileSize
		}
		if r.Off+r.Len > limit {
			return res, fmt.Errorf("%s: %w: a range at %d+%d lies past the image (%d bytes)", path, ErrUndoFile, r.Off, r.Len, limit)
		}
	}
	var n int64
	switch h.Image.Format {
	case imagefmt.FormatRaw:
		n, err = restoreRaw(u, lk.f, false)
	case imagefmt.FormatQcow2:
		n, err = restoreQcow2(u, lk.f, false)
	default:
		return res, fmt.Errorf("%s: %w (image format %q)", path, ErrUndoFile, h.Image.Format)
	}
	if err == errAlreadyUndone {
		res.AlreadyUndone = true
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.Ranges, res.Bytes = len(u.records), n
	if err := appendUndone(path, u.end, o.Now().UTC()); err != nil {
		return res, fmt.Errorf("the image was restored, but marking the undo file failed: %w", err)
	}
	return res, nil
}

var errAlreadyUndone = fmt.Errorf("already undone")

func sumAt(r io.ReaderAt, off, n int64) ([32]byte, error) {
	b := make([]byte, n)
	m, err := r.ReadAt(b, off)
	if int64(m) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// changedErr names the first ranges that are neither as the injection
// left them nor as they were.
func changedErr(img string, offs []int64) error {
	s := ""
	for i, o := range offs {
		if i == 3 {
			s += fmt.Sprintf(" and %d more", len(offs)-3)
			break
		}
		s += fmt.Sprintf(" %d", o)
	}
	return fmt.Errorf("%s: %w (was the VM started?); the ranges at%s hold bytes the injection did not write; restoring would corrupt the filesystem, use a restore point instead", img, ErrChanged, s)
}

// restoreRaw writes a raw image's saved bytes back. rollback says the
// caller is the failed transaction itself (ranges may hold the old or the
// new bytes).
func restoreRaw(u *undoFile, f *os.File, rollback bool) (int64, error) {
	h := u.header
	size, err := fileSize(f)
	if err != nil {
		return 0, err
	}
	if size != h.Image.FileSize {
		return 0, fmt.Errorf("%s: %w: it is %d bytes, it was %d", h.Image.Path, ErrChanged, size, h.Image.FileSize)
	}
	var bad []int64
	allOld := true
	for _, r := range u.records {
		if r.Space != spaceGuest || !r.HasData {
			return 0, fmt.Errorf("%s: %w: a raw image's record without saved bytes", u.path, ErrUndoFile)
		}
		cur, err := sumAt(f, r.Off, r.Len)
		if err != nil {
			return 0, err
		}
		switch {
		case cur == r.OldSum:
		case cur == r.NewSum && u.undone == nil:
			allOld = false
		default:
			allOld = false
			bad = append(bad, r.Off)
		}
	}
	if allOld && (u.undone != nil || u.commit != nil) {
		return 0, errAlreadyUndone
	}
	if len(bad) > 0 {
		return 0, changedErr(h.Image.Path, bad)
	}
	return writeBack(u, f, spaceGuest)
}

// writeBack writes every record of the space back, last first, syncs, and
// checks the result.
func writeBack(u *undoFile, f *os.File, space uint8) (int64, error) {
	src, err := os.Open(u.path)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	var n int64
	for i := len(u.records) - 1; i >= 0; i-- {
		r := u.records[i]
		if r.Space != space {
			continue
		}
		old, err := u.oldBytes(src, r)
		if err != nil {
			return n, err
		}
		if _, err := f.WriteAt(old, r.Off); err != nil {
			return n, fmt.Errorf("%s: writing %d bytes back at %d: %w", u.header.Image.Path, len(old), r.Off, err)
		}
		n += r.Len
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	for _, r := range u.records {
		if r.Space != space {
			continue
		}
		cur, err := sumAt(f, r.Off, r.Len)
		if err != nil {
			return n, err
		}
		if cur != r.OldSum {
			return n, fmt.Errorf("%s: the range at %d does not read back as restored", u.header.Image.Path, r.Off)
		}
	}
	return n, nil
}

// restoreQcow2 puts a qcow2 image file back: the saved host ranges
// (header, tables, refcounts, the clusters written in place) and its old
// length, which drops the clusters the injection appended. The guest view
// is checked against the hashes recorded before.
func restoreQcow2(u *undoFile, f *os.File, rollback bool) (int64, error) {
	h := u.header
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if u.commit != nil && !rollback {
		// Complete: the file must be exactly as the injection left it.
		var bad []int64
		allOld := size == h.Image.FileSize
		for i, r := range u.records {
			if r.Space != spaceHost {
				continue
			}
			cur, err := sumAt(f, r.Off, r.Len)
			if err != nil {
				allOld = false
				bad = append(bad, r.Off)
				continue
			}
			if cur != r.OldSum {
				allOld = false
			}
			if want, ok := u.commit.after(i); !ok || cur != want {
				bad = append(bad, r.Off)
			}
		}
		if allOld {
			return 0, errAlreadyUndone
		}
		if size != u.commit.FileSize {
			return 0, fmt.Errorf("%s: %w: the file is %d bytes, the injection left %d", h.Image.Path, ErrChanged, size, u.commit.FileSize)
		}
		if len(bad) > 0 {
			return 0, changedErr(h.Image.Path, bad)
		}
		if err := checkGuest(u, false); err != nil {
			return 0, err
		}
	} else if u.undone != nil {
		return 0, errAlreadyUndone
	}
	n, err := writeBack(u, f, spaceHost)
	if err != nil {
		return n, err
	}
	if err := f.Truncate(h.Image.FileSize); err != nil {
		return n, fmt.Errorf("%s: cutting back to %d bytes: %w", h.Image.Path, h.Image.FileSize, err)
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	return n, checkGuest(u, true)
}

// after returns the hash a record's range had after the injection.
func (c *undoCommit) after(i int) ([32]byte, bool) {
	var s [32]byte
	v, ok := c.After[i]
	if !ok {
		return s, false
	}
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != 32 {
		return s, false
	}
	copy(s[:], b)
	return s, true
}

// checkGuest reads the guest-view records through the image: with old,
// each must have its old bytes; else the bytes the injection wrote.
func checkGuest(u *undoFile, old bool) error {
	img, err := imagefmt.OpenWith(u.header.Image.Path, imagefmt.Options{Format: u.header.Image.Format})
	if err != nil {
		return fmt.Errorf("reopening %s to check it: %w", u.header.Image.Path, err)
	}
	defer img.Close()
	var bad []int64
	for i, r := range u.records {
		if r.Space != spaceGuest {
			continue
		}
		cur, err := sumAt(img, r.Off, r.Len)
		if err != nil {
			return err
		}
		want, ok := r.OldSum, true
		if !old {
			want = r.NewSum
			if !r.knownNew() && u.commit != nil {
				want, ok = u.commit.after(i)
			}
		}
		if ok && cur != want {
			bad = append(bad, r.Off)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	if old {
		return fmt.Errorf("%s: after restoring, the guest view differs from before the injection at %v", u.header.Image.Path, bad)
	}
	return changedErr(u.header.Image.Path, bad)
}
