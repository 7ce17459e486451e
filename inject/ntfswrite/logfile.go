package ntfswrite

import (
	"bytes"
	"fmt"
	"math/bits"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// $LogFile restart pages (ntfs-3g logfile.h RESTART_PAGE_HEADER and
// RESTART_AREA; byte offsets).
const (
	rpUSAOfs         = 4
	rpUSACount       = 6
	rpSystemPageSize = 16
	rpLogPageSize    = 20
	rpRestartArea    = 24
	rpHeaderSize     = 30

	raCurrentLSN   = 0
	raClientInUse  = 12
	raFlags        = 14
	raSize         = 48 // RESTART_AREA up to its reserved fields
	raVolumeClean  = 0x0002
	logNoClient    = 0xFFFF
	logMaxPageSize = 64 << 10
)

// logState is what the restart pages of a $LogFile say.
type logState struct {
	empty bool   // no restart page, every probed block empty (0xFF)
	clean bool   // empty, or the current restart area says clean
	lsn   uint64 // current LSN of the restart area used
	why   string // why it is not clean
}

// parseLogStart reads the state of a log from the first bytes of
// $LogFile (ntfs-3g logfile.c ntfs_check_logfile, ntfs_is_logfile_clean):
// restart pages are looked for at offsets 0, 512, 1024, 2048... (a page
// size is a power of two); blocks starting with 0xFFFFFFFF are empty; a
// log record page ("RCRD") ends the search. The more recent of the two
// restart areas decides. Only the restart pages are read: a log whose
// clients are gone or that says "clean" needs no replay.
func parseLogStart(read func(off int64, b []byte) error, size int64) (*logState, error) {
	st := &logState{empty: true}
	found := 0
	var best []byte
	blk := make([]byte, ntfsBlock)
	for pos := int64(0); pos+ntfsBlock <= size && pos <= 1<<30; {
		if err := read(pos, blk); err != nil {
			return nil, err
		}
		magic := string(blk[:4])
		if le.Uint32(blk) != 0xFFFFFFFF {
			st.empty = false
		} else if !st.empty {
			break
		}
		if magic == "RCRD" {
			break
		}
		if magic == "RSTR" || magic == "CHKD" {
			ra, err := loadRestartPage(read, blk, pos, size)
			if err == nil {
				found++
				if best == nil || le.Uint64(ra[raCurrentLSN:]) > le.Uint64(best[raCurrentLSN:]) {
					best = ra
				}
				if pos != 0 {
					break
				}
			}
		}
		if pos == 0 {
			pos = ntfsBlock
		} else {
			pos <<= 1
		}
	}
	if st.empty {
		st.clean = true
		return st, nil
	}
	if best == nil {
		st.why = "$LogFile holds no valid restart page and is not empty"
		return st, nil
	}
	st.lsn = le.Uint64(best[raCurrentLSN:])
	inUse, flags := le.Uint16(best[raClientInUse:]), le.Uint16(best[raFlags:])
	if inUse != logNoClient && flags&raVolumeClean == 0 {
		st.why = "$LogFile has transactions that were not checkpointed (Windows did not shut down cleanly, or was hibernated by fast startup): boot Windows and shut it down fully, or run chkdsk, first"
		return st, nil
	}
	st.clean = true
	return st, nil
}

// loadRestartPage checks the restart page whose first block is blk at
// pos and returns its restart area (ntfs-3g logfile.c
// ntfs_check_restart_page_header, ntfs_check_restart_area).
func loadRestartPage(read func(off int64, b []byte) error, blk []byte, pos, size int64) ([]byte, error) {
	sps := int64(le.Uint32(blk[rpSystemPageSize:]))
	lps := int64(le.Uint32(blk[rpLogPageSize:]))
	if sps < ntfsBlock || sps > logMaxPageSize || bits.OnesCount64(uint64(sps)) != 1 ||
		lps < ntfsBlock || lps > logMaxPageSize || bits.OnesCount64(uint64(lps)) != 1 {
		return nil, fmt.Errorf("restart page at %d: page sizes %d and %d", pos, sps, lps)
	}
	if pos != 0 && pos != sps {
		return nil, fmt.Errorf("restart page at %d with system page size %d", pos, sps)
	}
	if pos+sps > size {
		return nil, fmt.Errorf("restart page at %d past the log's %d bytes", pos, size)
	}
	usaOfs, usaCount := le.Uint16(blk[rpUSAOfs:]), le.Uint16(blk[rpUSACount:])
	if int64(usaCount) != sps/ntfsBlock+1 || usaOfs < rpHeaderSize || int64(usaOfs)+2*int64(usaCount) > ntfsBlock {
		return nil, fmt.Errorf("restart page at %d: update sequence array at %d with %d entries", pos, usaOfs, usaCount)
	}
	ra := int64(le.Uint16(blk[rpRestartArea:]))
	if ra%8 != 0 || ra < int64(usaOfs)+2*int64(usaCount) || ra+raSize > sps {
		return nil, fmt.Errorf("restart page at %d: restart area at %d", pos, ra)
	}
	page := make([]byte, sps)
	if err := read(pos, page); err != nil {
		return nil, err
	}
	// chkdsk may leave a CHKD page whose fixups were not applied.
	if string(page[:4]) == "RSTR" {
		if err := ntfs.ApplyFixups(page, usaOfs, usaCount); err != nil {
			return nil, fmt.Errorf("restart page at %d: %v", pos, err)
		}
	}
	return page[ra : ra+raSize], nil
}

// checkLogFile refuses a volume whose log holds transactions not yet
// applied: writing under them would be undone or corrupted by Windows
// replaying the log.
func (f *FS) checkLogFile() ([]string, error) {
	d, err := f.sysData(recLogFile)
	if err != nil {
		return nil, err
	}
	st, err := parseLogStart(func(off int64, b []byte) error { return f.valueRead(d, off, b) }, d.size)
	if err != nil {
		return nil, err
	}
	if !st.clean {
		return []string{st.why}, nil
	}
	return nil, nil
}

// resetLogFile plans the reset of $LogFile to an empty log, all 0xFF, as
// ntfsfix and ntfs-3g's recovery do (logfile.c ntfs_empty_logfile):
// Windows starts a new log on its next mount. Clusters already all 0xFF
// (a log ntfs-3g or mkntfs left) are not rewritten.
func (f *FS) resetLogFile() error {
	d, err := f.sysData(recLogFile)
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	cs := f.clusterSize
	buf := make([]byte, chunk)
	ff := bytes.Repeat([]byte{0xFF}, int(cs))
	var out []Change
	for _, r := range d.runs {
		for c := int64(0); c < r.N; {
			n := min(r.N-c, chunk/cs)
			b := buf[:n*cs]
			if err := f.st.readAt(b, (r.LCN+c)*cs); err != nil {
				return err
			}
			for i := int64(0); i < n; i++ {
				if bytes.Equal(b[i*cs:(i+1)*cs], ff) {
					continue
				}
				off := (r.LCN + c + i) * cs
				if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == off {
					out[k-1].Len += cs
					out[k-1].SrcLen += cs
					out[k-1].Src = fill{0xFF, out[k-1].Len}
					continue
				}
				out = append(out, Change{Off: off, Len: cs, Src: fill{0xFF, cs}, SrcLen: cs})
			}
			c += n
		}
	}
	f.logFill = out
	return nil
}
