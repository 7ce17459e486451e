package inject

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sampleUndo writes an undo file with a header, records of both spaces,
// and a commit, and returns its bytes.
func sampleUndo(t testing.TB) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.undo")
	u, err := createUndo(p, &undoHeader{Version: 1, Created: testNow, Tool: "test",
		Image: ImageID{Path: "/img", Format: "raw", FileSize: 1 << 20, VirtualSize: 1 << 20}, Volume: "/p1", VolumeOff: 4096, VolumeSize: 1 << 19, FSType: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		old := bytes.Repeat([]byte{byte(i)}, 1024)
		nw := bytes.Repeat([]byte{byte(i + 10)}, 1024)
		if err := u.add(spaceGuest, int64(i)*4096, old, sha256.Sum256(old), sha256.Sum256(nw), 1024); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.add(spaceHost, 0, nil, sha256.Sum256(nil), [32]byte{}, 512); err != nil {
		t.Fatal(err)
	}
	if err := u.commit(&undoCommit{Time: testNow, FileSize: 1 << 20, After: map[int]string{3: "00"}}); err != nil {
		t.Fatal(err)
	}
	if err := u.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUndoFileTorn: a file cut anywhere reads as the frames before the
// cut; the saved bytes of each record read back.
func TestUndoFileTorn(t *testing.T) {
	b := sampleUndo(t)
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if err := os.WriteFile(full, b, 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := readUndo(full)
	if err != nil {
		t.Fatal(err)
	}
	if u.torn || len(u.records) != 4 || u.commit == nil || u.header.Volume != "/p1" {
		t.Fatalf("read back: torn %v, %d records, commit %v, header %+v", u.torn, len(u.records), u.commit, u.header)
	}
	f, _ := os.Open(full)
	defer f.Close()
	for i, r := range u.records[:3] {
		old, err := u.oldBytes(f, r)
		if err != nil || !bytes.Equal(old, bytes.Repeat([]byte{byte(i)}, 1024)) {
			t.Errorf("record %d: %v", i, err)
		}
	}
	prev := 0
	for cut := len(undoMagic); cut < len(b); cut += 1 + cut%5 {
		p := filepath.Join(dir, "cut")
		os.WriteFile(p, b[:cut], 0o600)
		u, err := readUndo(p)
		if err != nil {
			continue // cut inside the header frame
		}
		if len(u.records) < prev || u.commit != nil {
			t.Fatalf("cut at %d: %d records (had %d), commit %v", cut, len(u.records), prev, u.commit)
		}
		prev = len(u.records)
	}
	if prev < 3 {
		t.Errorf("the longest cut read %d records", prev)
	}
	// A flipped byte in a record is caught by its CRC: reading stops
	// there.
	bad := bytes.Clone(b)
	bad[len(bad)/2] ^= 0x40
	p := filepath.Join(dir, "bad")
	os.WriteFile(p, bad, 0o600)
	if u, err := readUndo(p); err == nil && !u.torn {
		t.Errorf("a damaged undo file read whole")
	}
	if err := appendUndone(full, u.end, time.Now()); err != nil {
		t.Fatal(err)
	}
	if u, err := readUndo(full); err != nil || u.undone == nil || len(u.records) != 4 {
		t.Errorf("after appendUndone: %v %+v", err, u)
	}
}

// FuzzReadUndo: any bytes read as an undo file fail cleanly or parse; the
// reader never panics or allocates past the file's size.
func FuzzReadUndo(f *testing.F) {
	b := sampleUndo(f)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(undoMagic))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.undo")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		u, err := readUndo(p)
		if err != nil {
			return
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		for _, r := range u.records {
			if r.HasData {
				u.oldBytes(fh, r)
			}
		}
		if u.commit != nil {
			for i := range u.records {
				u.commit.after(i)
			}
		}
	})
}
