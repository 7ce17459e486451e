package ntfswrite

import (
	"bytes"
	"fmt"
	"math/bits"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// $LogFile restart pages (ntfs-3g logfile.h RESTART_PAGE_HEADER,
// RESTART_AREA and LOG_CLIENT_RECORD; byte offsets).
const (
	rpUSAOfs         = 4
	rpUSACount       = 6
	rpChkdskLSN      = 8
	rpSystemPageSize = 16
	rpLogPageSize    = 20
	rpRestartArea    = 24
	rpMinorVer       = 26
	rpMajorVer       = 28
	rpHeaderSize     = 30

	raCurrentLSN    = 0
	raLogClients    = 8
	raClientFree    = 10
	raClientInUse   = 12
	raFlags         = 14
	raSeqNumberBits = 16
	raLength        = 20
	raClientArray   = 22
	raFileSize      = 24
	raRecordHdrLen  = 36
	raPageDataOff   = 38
	raSize          = 48
	raVolumeClean   = 0x0002

	lcrPrev        = 16
	lcrNext        = 18
	lcrSize        = 160
	logNoClient    = 0xFFFF
	logMaxPageSize = 64 << 10
	// The log must hold two restart pages and this many record pages
	// (ntfs-3g logfile.h MinLogRecordPages), and is read up to 4 GiB.
	minLogRecordPages = 48
	maxLogFileSize    = 1 << 32
	defaultLogPage    = 4096
)

// logState is what the restart pages of a $LogFile say.
type logState struct {
	empty bool   // no restart page, every probed block empty (0xFF)
	clean bool   // empty, or the current restart area says clean
	lsn   uint64 // current LSN of the restart area used
	why   string // why it is not clean
}

// parseLogStart reads the state of a log from the first bytes of
// $LogFile as ntfs-3g does before mounting read-write (logfile.c
// ntfs_check_logfile, ntfs_is_logfile_clean): restart pages are looked
// for at offsets 0, 512, 1024, 2048... (a page size is a power of two);
// blocks starting with 0xFFFFFFFF are empty; a log record page ("RCRD")
// ends the search. Restart pages that do not check are skipped; the more
// recent of the two valid ones decides. Only the restart pages are read:
// a log whose clients are gone or that says "clean" needs no replay.
func parseLogStart(read func(off int64, b []byte) error, size int64) (*logState, error) {
	st := &logState{empty: true}
	size = min(size, maxLogFileSize) &^ (defaultLogPage - 1)
	if size < 2*defaultLogPage || (size-2*defaultLogPage)/defaultLogPage < minLogRecordPages {
		st.empty = false
		st.why = fmt.Sprintf("$LogFile of %d bytes is too small to be a log", size)
		return st, nil
	}
	var best []byte
	var bestLSN uint64
	blk := make([]byte, ntfsBlock)
	for pos := int64(0); pos < size; {
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
			ra, lsn, err := loadRestartPage(read, blk, pos, size)
			if err == nil {
				if best == nil || lsn > bestLSN {
					best, bestLSN = ra, lsn
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
	st.lsn = bestLSN
	inUse, flags := le.Uint16(best[raClientInUse:]), le.Uint16(best[raFlags:])
	if inUse != logNoClient && flags&raVolumeClean == 0 {
		st.why = "$LogFile has transactions that were not checkpointed (Windows did not shut down cleanly, or was hibernated by fast startup): boot Windows and shut it down fully, or run chkdsk, first"
		return st, nil
	}
	st.clean = true
	return st, nil
}

// loadRestartPage checks the restart page whose first block is blk at
// pos and returns its restart area and LSN (the checks of ntfs-3g
// logfile.c ntfs_check_restart_page_header, ntfs_check_restart_area and
// ntfs_check_log_client_array).
func loadRestartPage(read func(off int64, b []byte) error, blk []byte, pos, size int64) ([]byte, uint64, error) {
	bad := func(format string, args ...any) ([]byte, uint64, error) {
		return nil, 0, fmt.Errorf("restart page at %d: %s", pos, fmt.Sprintf(format, args...))
	}
	chkd := string(blk[:4]) == "CHKD"
	sps := int64(le.Uint32(blk[rpSystemPageSize:]))
	lps := int64(le.Uint32(blk[rpLogPageSize:]))
	if sps < ntfsBlock || sps > logMaxPageSize || bits.OnesCount64(uint64(sps)) != 1 ||
		lps < ntfsBlock || lps > logMaxPageSize || bits.OnesCount64(uint64(lps)) != 1 {
		return bad("page sizes %d and %d", sps, lps)
	}
	if pos != 0 && pos != sps {
		return bad("system page size %d", sps)
	}
	if sps > size {
		return bad("page past the log's %d bytes", size)
	}
	major, minor := int16(le.Uint16(blk[rpMajorVer:])), int16(le.Uint16(blk[rpMinorVer:]))
	if !(major == 1 && minor == 1) && !(major == 2 && minor == 0) {
		return bad("log version %d.%d", major, minor)
	}
	usaOfs, usaCount := int64(le.Uint16(blk[rpUSAOfs:])), int64(le.Uint16(blk[rpUSACount:]))
	haveUSA := !(chkd && usaCount == 0)
	usaEnd := int64(rpHeaderSize)
	if haveUSA {
		usaEnd = usaOfs + 2*usaCount
		if usaCount != sps/ntfsBlock+1 || usaOfs < rpHeaderSize || usaEnd > ntfsBlock-2 {
			return bad("update sequence array at %d with %d entries", usaOfs, usaCount)
		}
	}
	ra := int64(le.Uint16(blk[rpRestartArea:]))
	if ra%8 != 0 || ra < usaEnd || ra > sps {
		return bad("restart area at %d", ra)
	}
	if !chkd && le.Uint64(blk[rpChkdskLSN:]) != 0 {
		return bad("a chkdsk LSN without chkdsk's magic")
	}
	if ra+raFileSize > ntfsBlock-2 {
		return bad("restart area at %d past the first sector", ra)
	}
	a := blk[ra:]
	ca := int64(le.Uint16(a[raClientArray:]))
	clients := int64(le.Uint16(a[raLogClients:]))
	raLen := ca + clients*lcrSize
	if ca%8 != 0 || ra+ca > ntfsBlock-2 {
		return bad("client array at %d", ca)
	}
	if ra+raLen > sps || ra+int64(le.Uint16(a[raLength:])) > sps || raLen > int64(le.Uint16(a[raLength:])) {
		return bad("restart area of %d bytes", le.Uint16(a[raLength:]))
	}
	free, inUse := int64(le.Uint16(a[raClientFree:])), int64(le.Uint16(a[raClientInUse:]))
	if free != logNoClient && free >= clients || inUse != logNoClient && inUse >= clients {
		return bad("client lists %d and %d for %d clients", free, inUse, clients)
	}
	if ra+raSize > ntfsBlock-2 {
		return bad("restart area at %d past the first sector", ra)
	}
	fsBits := uint32(bits.Len64(le.Uint64(a[raFileSize:])))
	if le.Uint32(a[raSeqNumberBits:]) != 67-fsBits {
		return bad("sequence number bits %d for a %d-byte log", le.Uint32(a[raSeqNumberBits:]), le.Uint64(a[raFileSize:]))
	}
	if le.Uint16(a[raRecordHdrLen:])%8 != 0 || le.Uint16(a[raPageDataOff:])%8 != 0 {
		return bad("log record header length or page data offset not a multiple of 8")
	}
	page := make([]byte, sps)
	if err := read(pos, page); err != nil {
		return nil, 0, err
	}
	if haveUSA {
		if usaCount-1 < sps/ntfsBlock {
			return bad("update sequence array too short")
		}
		if err := ntfs.ApplyFixups(page, uint16(usaOfs), uint16(usaCount)); err != nil {
			// A torn page matters only past the first sector.
			if ra+int64(le.Uint16(a[raLength:])) > ntfsBlock-2 {
				return bad("%v", err)
			}
			copy(page, blk)
		}
	}
	area := page[ra : ra+raSize]
	if !chkd && inUse != logNoClient {
		if err := checkClients(page, ra, ca, clients, free, inUse); err != nil {
			return bad("%v", err)
		}
	}
	lsn := le.Uint64(area[raCurrentLSN:])
	if chkd {
		lsn = le.Uint64(page[rpChkdskLSN:])
	}
	return area, lsn, nil
}

// checkClients walks the free and in-use lists of log client records:
// each index inside the array, no more records than the array has (no
// loop), the first of each list without a previous one.
func checkClients(page []byte, ra, ca, clients, free, inUse int64) error {
	off := ra + ca
	if off >= int64(len(page)) {
		return fmt.Errorf("client array past the page")
	}
	n := clients
	for _, idx := range []int64{free, inUse} {
		for first := true; idx != logNoClient; n-- {
			if n == 0 || idx >= clients || off+(idx+1)*lcrSize > int64(len(page)) {
				return fmt.Errorf("log client array is corrupt")
			}
			cr := page[off+idx*lcrSize:]
			if first && le.Uint16(cr[lcrPrev:]) != logNoClient {
				return fmt.Errorf("log client array is corrupt")
			}
			first = false
			idx = int64(le.Uint16(cr[lcrNext:]))
		}
	}
	return nil
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
