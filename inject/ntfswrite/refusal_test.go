package ntfswrite

import (
	"bytes"
	"errors"
	"math/bits"
	"os"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/ntfs"
	"github.com/vmmount/vmmount/testimages"
)

// patchRecord changes record num of an image with fn and writes it (and
// its $MFTMirr copy unless mftOnly) back, through the writer's own
// encoding.
func patchRecord(t *testing.T, img string, num uint64, mftOnly bool, fn func(r *mrec)) {
	t.Helper()
	f := openImage(t, img)
	r, err := f.record(num)
	if err != nil {
		t.Fatal(err)
	}
	fn(r)
	b, err := r.serialize(int(f.recSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.nrWrite(f.mftData().runs, int64(num)*f.recSize, b); err != nil {
		t.Fatal(err)
	}
	if num < uint64(f.mirrRecs) && !mftOnly {
		mirr, _ := f.sysData(recMFTMirr)
		if err := f.nrWrite(mirr.runs, int64(num)*f.recSize, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeChanges(img, f.st.changes(f.clusterSize)); err != nil {
		t.Fatal(err)
	}
}

// writeLog writes b at the start of $LogFile, twice (both restart pages)
// when twice.
func writeLog(t *testing.T, img string, b []byte, twice bool) {
	t.Helper()
	f := openImage(t, img)
	d, err := f.sysData(recLogFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.nrWrite(d.runs, 0, b); err != nil {
		t.Fatal(err)
	}
	if twice {
		if err := f.nrWrite(d.runs, int64(len(b)), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeChanges(img, f.st.changes(f.clusterSize)); err != nil {
		t.Fatal(err)
	}
}

// restartPage is a $LogFile restart page of 4096 bytes (LFS 1.1) for a
// log of size bytes, whose one client record is in use or not, and which
// says clean or not.
func restartPage(size int64, inUse, clean bool, lsn uint64) []byte {
	p := make([]byte, 4096)
	copy(p, "RSTR")
	le.PutUint16(p[rpUSAOfs:], rpHeaderSize)
	le.PutUint16(p[rpUSACount:], 9)
	le.PutUint32(p[rpSystemPageSize:], 4096)
	le.PutUint32(p[rpLogPageSize:], 4096)
	le.PutUint16(p[rpRestartArea:], 48)
	le.PutUint16(p[rpMinorVer:], 1)
	le.PutUint16(p[rpMajorVer:], 1)
	ra := p[48:]
	le.PutUint64(ra[raCurrentLSN:], lsn)
	le.PutUint16(ra[raLogClients:], 1)
	le.PutUint16(ra[raClientFree:], logNoClient)
	le.PutUint16(ra[raClientInUse:], 0)
	if !inUse {
		le.PutUint16(ra[raClientFree:], 0)
		le.PutUint16(ra[raClientInUse:], logNoClient)
	}
	if clean {
		le.PutUint16(ra[raFlags:], raVolumeClean)
	}
	le.PutUint32(ra[raSeqNumberBits:], uint32(67-bits.Len64(uint64(size))))
	le.PutUint16(ra[raLength:], raSize+lcrSize)
	le.PutUint16(ra[raClientArray:], raSize)
	le.PutUint64(ra[raFileSize:], uint64(size))
	le.PutUint16(ra[raRecordHdrLen:], 0x30)
	le.PutUint16(ra[raPageDataOff:], 0x40)
	cr := ra[raSize:]
	le.PutUint16(cr[lcrPrev:], logNoClient)
	le.PutUint16(cr[lcrNext:], logNoClient)
	le.PutUint16(cr[20:], 8)
	copy(cr[24:], utf16Bytes(utf16Units("NTFS")))
	if err := protect(p, rpHeaderSize, 9, 7); err != nil {
		panic(err)
	}
	return p
}

// logSize is the size of an image's $LogFile.
func logSize(t *testing.T, img string) int64 {
	t.Helper()
	d, err := openImage(t, img).sysData(recLogFile)
	if err != nil {
		t.Fatal(err)
	}
	return d.size
}

// addHiberfile puts a hiberfil.sys in the root holding header.
func addHiberfile(t *testing.T, img string, header []byte) {
	t.Helper()
	f := openImage(t, img)
	if _, err := f.Create(RootRecord, "hiberfil.sys", Attr{Attributes: FileAttrHidden | FileAttrSystem}, content(header)); err != nil {
		t.Fatal(err)
	}
	apply(t, f, img)
}

// TestRefusedVolumes: a volume Windows did not leave clean, or that the
// writer cannot write safely, is refused by Open, with the reason, and
// the reader agrees where it notices.
func TestRefusedVolumes(t *testing.T) {
	base := mkntfs(t, layouts[0], nil)
	hdr := func(magic string, n int) []byte {
		b := make([]byte, n)
		copy(b, magic)
		return b
	}
	for _, tc := range []struct {
		name  string
		patch func(t *testing.T, img string)
		text  string // "" means accepted
		warn  string // a warning fsread/ntfs must give, if any
	}{
		{"clean", func(t *testing.T, img string) {}, "", ""},
		{"dirty", func(t *testing.T, img string) {
			patchRecord(t, img, recVolume, false, func(r *mrec) {
				v := r.find(atVolumeInformation, nil)
				le.PutUint16(v.value[10:], le.Uint16(v.value[10:])|volumeIsDirty)
				v.changed()
			})
		}, "marked dirty", "dirty"},
		{"chkdsk underway", func(t *testing.T, img string) {
			patchRecord(t, img, recVolume, false, func(r *mrec) {
				v := r.find(atVolumeInformation, nil)
				le.PutUint16(v.value[10:], volumeChkdskUnderway)
				v.changed()
			})
		}, "chkdsk was interrupted", ""},
		{"ntfs 3.0", func(t *testing.T, img string) {
			patchRecord(t, img, recVolume, false, func(r *mrec) {
				v := r.find(atVolumeInformation, nil)
				v.value[9] = 0
				v.changed()
			})
		}, "NTFS version 3.0", ""},
		{"mirror mismatch", func(t *testing.T, img string) {
			patchRecord(t, img, recVolume, true, func(r *mrec) {
				v := r.find(atVolumeName, nil)
				v.value = utf16Bytes(utf16Units("other"))
				v.changed()
			})
		}, "$MFTMirr does not match $MFT at record 3", ""},
		{"unclean log", func(t *testing.T, img string) {
			writeLog(t, img, restartPage(logSize(t, img), true, false, 1000), true)
		}, "not checkpointed", "not clean"},
		{"log without restart page", func(t *testing.T, img string) {
			writeLog(t, img, bytes.Repeat([]byte("garbage!"), 512), false)
		}, "no valid restart page", "restart page"},
		{"clean log (XP and later)", func(t *testing.T, img string) {
			writeLog(t, img, restartPage(logSize(t, img), true, true, 1000), true)
		}, "", ""},
		{"clean log (2000)", func(t *testing.T, img string) {
			writeLog(t, img, restartPage(logSize(t, img), false, false, 1000), true)
		}, "", ""},
		{"hibernated", func(t *testing.T, img string) { addHiberfile(t, img, hdr("hibr", 8192)) }, "Windows is hibernated", ""},
		{"fast startup", func(t *testing.T, img string) { addHiberfile(t, img, hdr("HIBR", 8192)) }, "fast startup", ""},
		{"resuming", func(t *testing.T, img string) { addHiberfile(t, img, hdr("RSTR", 8192)) }, "resuming", ""},
		{"short hiberfil.sys", func(t *testing.T, img string) { addHiberfile(t, img, hdr("", 100)) }, "less than a hibernation header", ""},
		{"resumed", func(t *testing.T, img string) { addHiberfile(t, img, hdr("wake", 8192)) }, "", ""},
		{"no hibernation", func(t *testing.T, img string) { addHiberfile(t, img, hdr("", 8192)) }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := copyImage(t, base)
			tc.patch(t, img)
			_, err := openFile(img)
			switch {
			case tc.text == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.text != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.text)):
				t.Fatalf("%v, want refused mentioning %q", err, tc.text)
			}
			// ntfs-3g refuses to mount read-write (without replaying or
			// resetting the log) what the writer refuses for the log and
			// hibernation, and mounts what it accepts.
			if strings.Contains(tc.name, "log") || strings.Contains(tc.name, "hiber") || tc.name == "clean" || tc.name == "resumed" {
				mnt := t.TempDir()
				umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "no_detach,norecover", img, mnt)
				rw := false
				if err == nil {
					// ntfs-3g falls back to a read-only mount.
					rw = !mountedReadOnly(t, mnt)
					umount()
				}
				if rw != (tc.text == "") {
					t.Errorf("ntfs-3g -o norecover mounts it read-write: %v (%v); the writer: %q", rw, err, tc.text)
				}
			}
			if tc.warn != "" {
				fh, _ := os.Open(img)
				defer fh.Close()
				st, _ := fh.Stat()
				r, err := ntfs.Open(fh, st.Size(), ntfs.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if w := strings.Join(r.Warnings(), "; "); !strings.Contains(w, tc.warn) {
					t.Errorf("fsread/ntfs warnings %q, want one about %q", w, tc.warn)
				}
			}
		})
	}
}

// TestLogReset: a clean log that is not empty (as Windows leaves it) is
// emptied by a transaction, as ntfsfix does, and nothing else of the
// volume changes but what the transaction wrote; an empty log is not
// rewritten.
func TestLogReset(t *testing.T) {
	img := mkntfs(t, layouts[0], nil)
	writeLog(t, img, restartPage(logSize(t, img), true, true, 1000), true)
	f := openImage(t, img)
	if _, err := f.Create(RootRecord, "after-windows.txt", Attr{}, content([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	chs := apply(t, f, img)
	var fills int64
	for _, c := range chs {
		if _, ok := c.Src.(fill); ok {
			fills += c.Len
		}
	}
	if fills == 0 {
		t.Fatal("the log was not reset")
	}
	g := openImage(t, img)
	d, _ := g.sysData(recLogFile)
	b := make([]byte, d.size)
	if err := g.valueRead(d, 0, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, bytes.Repeat([]byte{0xFF}, len(b))) {
		t.Error("the log is not all 0xFF")
	}
	checkImage(t, img)
	// The log is empty now: a second transaction does not touch it.
	f = openImage(t, img)
	if _, err := f.Create(RootRecord, "second.txt", Attr{}, content([]byte("y"))); err != nil {
		t.Fatal(err)
	}
	for _, c := range apply(t, f, img) {
		if _, ok := c.Src.(fill); ok {
			t.Errorf("the empty log rewritten at %d", c.Off)
		}
	}
	for _, e := range f.Events() {
		if e.Op == OpLogReset {
			t.Error("log-reset event for an empty log")
		}
	}
}

// mountedReadOnly says whether mnt is mounted read-only.
func mountedReadOnly(t *testing.T, mnt string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == mnt {
			return strings.HasPrefix(f[5], "ro")
		}
	}
	t.Fatalf("%s is not mounted", mnt)
	return false
}
