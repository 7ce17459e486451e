package ntfswrite

import (
	"errors"
	"fmt"
)

// checkVolume reads $Volume: the NTFS version and the volume flags.
func (f *FS) checkVolume() ([]string, error) {
	r, err := f.record(recVolume)
	if err != nil {
		return nil, err
	}
	vi := r.find(atVolumeInformation, nil)
	if vi == nil || !vi.resident || len(vi.value) < 12 {
		return nil, f.corrupt("$Volume has no $VOLUME_INFORMATION")
	}
	f.major, f.minor = vi.value[8], vi.value[9]
	flags := le.Uint16(vi.value[10:])
	var why []string
	if f.major != 3 || f.minor != 1 {
		why = append(why, fmt.Sprintf("NTFS version %d.%d (the writer handles 3.1, Windows XP and later)", f.major, f.minor))
	}
	if flags&volumeIsDirty != 0 {
		why = append(why, "the volume is marked dirty (Windows did not shut down cleanly or scheduled chkdsk; boot Windows or run chkdsk first)")
	}
	if flags&volumeChkdskUnderway != 0 {
		why = append(why, "chkdsk was interrupted on this volume (run chkdsk first)")
	}
	if flags&volumeUpgradeOnMount != 0 {
		why = append(why, "the volume is to be upgraded on its next mount by Windows")
	}
	return why, nil
}

// checkMirror compares the records $MFTMirr holds with $MFT, as ntfs-3g
// does before mounting (volume.c ntfs_device_mount): a mismatch means one
// copy is damaged, and writing the mirror from $MFT could make it worse.
func (f *FS) checkMirror() ([]string, error) {
	mirr, err := f.sysData(recMFTMirr)
	if err != nil {
		return nil, err
	}
	for i := int64(0); i < min(f.mirrRecs, firstUser); i++ {
		a, err := f.recordBytes(uint64(i))
		if err != nil {
			return nil, err
		}
		b := make([]byte, f.recSize)
		if err := f.nrRead(mirr.runs, i*f.recSize, b); err != nil {
			return nil, err
		}
		_, errA := parseRecord(append([]byte(nil), a...), uint64(i), f.clusters)
		_, errB := parseRecord(append([]byte(nil), b...), uint64(i), f.clusters)
		if errA != nil && !errors.Is(errA, errRecordFree) || errB != nil && !errors.Is(errB, errRecordFree) {
			return []string{fmt.Sprintf("$MFT or $MFTMirr record %d is damaged (run chkdsk or ntfsfix first)", i)}, nil
		}
		if !sameRecords(deprotect(a), deprotect(b)) {
			return []string{fmt.Sprintf("$MFTMirr does not match $MFT at record %d (run chkdsk or ntfsfix first)", i)}, nil
		}
	}
	return nil, nil
}

// deprotect undoes the fixups of a record read raw, leaving it as it is
// when they do not check.
func deprotect(b []byte) []byte {
	c := append([]byte(nil), b...)
	if len(c) >= recHeaderSize && string(c[:4]) == "FILE" {
		fixupsUndo(c)
	}
	return c
}

// loadUpcase reads $UpCase (up to 65536 UTF-16 units).
func (f *FS) loadUpcase() error {
	d, err := f.sysData(recUpCase)
	if err != nil {
		return err
	}
	if d.size < 2*128 || d.size > 2*65536 || d.size%2 != 0 {
		return f.corrupt("$UpCase of %d bytes", d.size)
	}
	b := make([]byte, d.size)
	if err := f.valueRead(d, 0, b); err != nil {
		return err
	}
	f.upcase = unitsOf(b)
	for c := uint16('a'); c <= 'z'; c++ {
		if f.upcase.of(c) != c-'a'+'A' {
			return f.corrupt("$UpCase maps %q to %#x", rune(c), f.upcase.of(c))
		}
	}
	return nil
}

// hiberHeaderSize is how much of hiberfil.sys ntfs-3g reads
// (NTFS_HIBERFILE_HEADER_SIZE).
const hiberHeaderSize = 4096

// checkHiberfile refuses a volume Windows hibernated, fast startup
// included, as ntfs-3g does (volume.c ntfs_volume_check_hiberfile): a
// hiberfil.sys in the root whose header says "hibr" (or "HIBR"), or one
// shorter than its header; "rstr" (a resume in progress) too. Writing such
// a volume loses the writes, or corrupts it, when Windows resumes from
// the memory image. "wake" means the image was already resumed from.
func (f *FS) checkHiberfile() ([]string, error) {
	x, err := f.openDir(recRoot)
	if err != nil {
		return nil, err
	}
	e, err := x.lookupIgnoreCase(utf16Units("hiberfil.sys"))
	if err != nil || e == nil {
		return nil, err
	}
	num, _ := splitRef(e.ref())
	r, err := f.record(num)
	if err != nil {
		return nil, fmt.Errorf("hiberfil.sys: %w", err)
	}
	// Its first extent, which holds the header and the sizes (a big
	// hiberfil.sys may have an attribute list).
	var d *rattr
	for _, a := range r.findAll(atData) {
		if len(a.name) == 0 && (a.resident || a.lowVCN == 0) {
			d = a
			break
		}
	}
	if d == nil {
		return nil, f.refuse("hiberfil.sys has no $DATA the writer can read")
	}
	if d.valueSize() < hiberHeaderSize {
		return []string{fmt.Sprintf("hiberfil.sys holds %d bytes, less than a hibernation header (ntfs-3g treats it as a hibernated non-system volume)", d.valueSize())}, nil
	}
	b := make([]byte, hiberHeaderSize)
	if err := f.valueRead(d, 0, b); err != nil {
		return nil, fmt.Errorf("hiberfil.sys: %w", err)
	}
	switch string(b[:4]) {
	case "hibr", "HIBR":
		return []string{"Windows is hibernated (hiberfil.sys says \"" + string(b[:4]) + "\"; with fast startup, a shutdown hibernates too): boot Windows and shut it down fully (shutdown /s /t 0, or disable fast startup) first"}, nil
	case "rstr", "RSTR":
		return []string{"Windows was resuming from hibernation (hiberfil.sys says \"" + string(b[:4]) + "\"): boot Windows and shut it down fully first"}, nil
	}
	return nil, nil
}
