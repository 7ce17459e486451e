package repo

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPublishListLatest(t *testing.T) {
	r, err := OpenOrInit(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := r.LockVM("web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LockVM("web"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 3 {
		p, err := r.NewPartial("web", t0) // same second: ids get suffixes
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p.Path("vda.qcow2"), []byte("x"), 0o644)
		m := &Manifest{Time: t0, Mode: ModeImages, Disks: []Disk{{Target: "vda", Image: "vda.qcow2"}}}
		if i > 0 {
			m.Parent = ids[i-1]
		}
		pt, err := p.Publish(m)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pt.ID)
	}
	// A partial left by a killed backup is invisible and cleaned.
	if _, err := r.NewPartial("web", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	points, errs, err := r.Points("web")
	if err != nil || len(errs) > 0 || len(points) != 3 {
		t.Fatalf("Points: %v %v %d", err, errs, len(points))
	}
	removed, err := r.CleanPartial("web")
	if err != nil || len(removed) != 1 {
		t.Fatalf("CleanPartial: %v %v", removed, err)
	}
	lock.Unlock()

	latest, err := r.Point("web/latest")
	if err != nil || latest.ID != ids[2] {
		t.Fatalf("latest: %v %v, want %s", latest, err, ids[2])
	}
	if target, _ := os.Readlink(filepath.Join(r.VMDir("web"), LatestLink)); target != ids[2] {
		t.Fatalf("latest link -> %q", target)
	}
	chain, err := r.Chain(latest)
	if err != nil || len(chain) != 3 {
		t.Fatalf("Chain: %d %v", len(chain), err)
	}
	for _, bad := range []string{"web", "web/../x", "../web/latest", "web/nope", "/web/latest"} {
		if _, err := r.Point(bad); err == nil {
			t.Errorf("Point(%q) succeeded", bad)
		}
	}
}

func TestManifestRejectsEscapingNames(t *testing.T) {
	dir := t.TempDir()
	m := &Manifest{Schema: 1, ID: "20261125T120000Z", Disks: []Disk{{Target: "vda", Image: "../../etc/passwd"}}}
	if err := writeManifest(filepath.Join(dir, ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(filepath.Join(dir, ManifestFile)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadManifest: %v, want ErrCorrupt", err)
	}
}

func TestPolicy(t *testing.T) {
	var points []*Point
	start := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	for d := range 90 { // one point a day for 90 days, two on day 89
		tm := start.AddDate(0, 0, d)
		points = append(points, &Point{ID: NewID(tm), Manifest: &Manifest{Time: tm}})
	}
	tm := start.AddDate(0, 0, 89).Add(time.Hour)
	points = append(points, &Point{ID: NewID(tm), Manifest: &Manifest{Time: tm}})
	ds := Policy{Last: 2, Daily: 3, Weekly: 2, Monthly: 3}.Apply(points)
	var kept []string
	for _, d := range ds {
		if d.Keep {
			kept = append(kept, d.Point.ID)
		}
	}
	want := []string{
		"20260131T030000Z", // monthly: January
		"20260228T030000Z", // monthly: February
		"20260329T030000Z", // daily; weekly: Sunday ends ISO week 13
		"20260330T030000Z", // daily
		"20260331T030000Z", // last
		"20260331T040000Z", // last, daily, weekly (14), monthly
	}
	if len(kept) != len(want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
	for i := range want {
		if kept[i] != want[i] {
			t.Fatalf("kept %v, want %v", kept, want)
		}
	}
}

func TestBlockHashesRoundTrip(t *testing.T) {
	h := NewBlockHashes(3*HashBlockSize+100, HashBlockSize)
	for i := range h.Sums {
		h.Sums[i] = ZeroSum(h.BlockLen(i))
	}
	h.Sums[1][0] = 1
	p := filepath.Join(t.TempDir(), "vda.hashes")
	if err := h.Write(p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadBlockHashes(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != h.Digest() || len(got.Sums) != 4 || got.BlockLen(3) != 100 {
		t.Fatalf("round trip differs")
	}
	b, _ := os.ReadFile(p)
	for _, cut := range []int{0, 10, 64, len(b) - 1} {
		if _, err := decodeBlockHashes(b[:cut]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d: %v", cut, err)
		}
	}
}

func FuzzBlockHashes(f *testing.F) {
	f.Add(NewBlockHashes(5*HashBlockSize, HashBlockSize).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeBlockHashes(b); err == nil {
			_ = h.Digest()
		}
	})
}
