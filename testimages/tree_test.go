package testimages

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRichTreeDeterministic builds the tree twice with the same seed: the
// two scans must agree in every field but ctime (set by the kernel), and
// the features the tree promises must be there.
func TestRichTreeDeterministic(t *testing.T) {
	RequireRoot(t) // owners, devices, trusted.* xattrs
	o := ExtTree()
	o.BigDir = 600
	var ms [2]*Manifest
	for i := range ms {
		dir := t.TempDir()
		if err := RichTree(dir, o); err != nil {
			t.Fatal(err)
		}
		m, err := ScanDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	opts := CompareOptions{Fields: AllFields &^ (FieldCtime | FieldBtime | FieldBlocks | FieldDirSize)}
	if diffs := Compare(ms[0], ms[1], opts); len(diffs) > 0 {
		t.Errorf("two trees of one seed differ:\n%s", strings.Join(diffs, "\n"))
	}
	checkFeatures(t, ms[0], o)
}

// checkFeatures asserts a manifest holds what RichTree made with o.
func checkFeatures(t *testing.T, m *Manifest, o TreeOptions) {
	t.Helper()
	o.defaults()
	for _, e := range m.Entries {
		if e.Err != "" {
			t.Errorf("%s: %s", e.Path, e.Err)
		}
	}
	must := func(path string, ok func(e *Entry) bool, what string) {
		t.Helper()
		e := m.Get(path)
		if e == nil {
			t.Errorf("%s: missing (%s)", path, what)
		} else if !ok(e) {
			t.Errorf("%s: not %s: %+v", path, what, *e)
		}
	}
	n := 0
	for _, e := range m.Entries {
		if strings.HasPrefix(e.Path, "big/") && !strings.Contains(e.Path[4:], "/") {
			n++
		}
	}
	if n != o.BigDir {
		t.Errorf("big/ has %d entries, want %d", n, o.BigDir)
	}
	must("deep"+strings.Repeat("/l00", 0), func(e *Entry) bool { return e.IsDir() }, "a directory")
	must("files/size-1048583.bin", func(e *Entry) bool { return e.Size == 1<<20+7 && e.SHA256 != "" }, "1 MiB + 7")
	must("names/"+strings.Repeat("a", 255), func(e *Entry) bool { return !e.IsDir() }, "a 255-byte name")
	must("times/y2020-ns", func(e *Entry) bool {
		return e.Mtime.Nanosecond() == 987654300 || e.Mtime.Nanosecond() == 987654321 || o.TimeStep >= time.Second
	}, "nanoseconds")
	if o.MaxTime.After(time.Unix(1<<31, 0)) {
		must("times/y2038-after", func(e *Entry) bool { return e.Mtime.Equal(time.Unix(1<<31, 0)) }, "after 2038")
	}
	if o.MinTime.Before(time.Unix(0, 0)) {
		must("times/y1969-before-epoch", func(e *Entry) bool { return e.Mtime.Before(time.Unix(0, 0)) }, "before 1970")
	}
	if !o.NoSymlinks {
		must("links/long993", func(e *Entry) bool { return len(e.Target) == 993 }, "a 993-byte symlink")
		must("links/short", func(e *Entry) bool { return e.Target == "x" }, "a fast symlink")
	}
	if !o.NoHardlinks {
		groups := m.HardlinkGroups()
		found := false
		for _, g := range groups {
			if len(g) == 3 && g[0] == "hardlinks/a/three-1" {
				found = true
			}
		}
		if !found {
			t.Errorf("no hardlink group of 3 in %v", groups)
		}
	}
	if !o.NoXattrs {
		must("xattr/user", func(e *Entry) bool { return e.Xattrs["user.comment"] == "text:hello, world" }, "with user.comment")
	}
	if !o.NoACLs {
		must("xattr/acl-dir", func(e *Entry) bool { return e.Xattrs["system.posix_acl_default"] != "" }, "with a default ACL")
	}
	if !o.UserXattrsOnly && !o.NoXattrs {
		must("xattr/trusted", func(e *Entry) bool { return e.Xattrs["trusted.test"] != "" }, "with trusted.test")
	}
	if !o.NoSpecial {
		must("special/chr-300-70000", func(e *Entry) bool { return e.Type() == "char" && e.Rdev != 0 }, "a char device")
		must("special/socket", func(e *Entry) bool { return e.Type() == "socket" }, "a socket")
		must("special/fifo", func(e *Entry) bool { return e.Type() == "fifo" }, "a FIFO")
	}
	if !o.NoModes {
		must("modes/f4755", func(e *Entry) bool { return e.Mode&0o7777 == 0o4755 }, "setuid")
		must("modes/d1777", func(e *Entry) bool { return e.Mode&0o7777 == 0o1777 }, "sticky")
	}
	if !o.NoOwners {
		must("owners/u100000-g200000", func(e *Entry) bool { return e.Uid == 100000 && e.Gid == 200000 }, "owned by 100000:200000")
	}
	if !o.NoSparse {
		must("sparse/all-hole", func(e *Entry) bool { return e.Size == 10<<20 }, "10 MiB")
	}
}

func TestRoundTime(t *testing.T) {
	for _, c := range []struct {
		in   time.Time
		step time.Duration
		want time.Time
	}{
		{time.Unix(3, 999), 100, time.Unix(3, 900)},
		{time.Unix(3, 999), 2 * time.Second, time.Unix(2, 0)},
		{time.Unix(-3, 5), 2 * time.Second, time.Unix(-4, 0)},
		{time.Unix(extMaxTime.Unix(), 999999999), 100, time.Unix(extMaxTime.Unix(), 999999900)},
	} {
		if got := roundTime(c.in, c.step); !got.Equal(c.want) {
			t.Errorf("roundTime(%v, %v) = %v, want %v", c.in, c.step, got, c.want)
		}
	}
}

func TestManifestJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := TreeOptions{BigDir: 10, Depth: 3, LargeSize: -1, NoOwners: true, NoSpecial: true, NoModes: true,
		UserXattrsOnly: true}
	if os.Geteuid() != 0 {
		o.NoOwners = true
	}
	if err := RichTree(dir, o); err != nil {
		t.Fatal(err)
	}
	m, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "m.json")
	if err := m.WriteJSON(name); err != nil {
		t.Fatal(err)
	}
	m2, err := ReadJSON(name)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := Compare(m, m2, CompareOptions{Fields: AllFields}); len(diffs) > 0 {
		t.Errorf("JSON round trip differs:\n%s", strings.Join(diffs, "\n"))
	}
	// A changed copy must show each change.
	m2.Get("files/text.txt").SHA256 = "00"
	m2.Get("times/y2020-ns").Mtime = time.Unix(5, 0)
	m2.Remove("deep")
	if diffs := Compare(m, m2, CompareOptions{}); len(diffs) != 2+6 {
		t.Errorf("got %d diffs, want 8:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
	if diffs := Compare(m, m2, CompareOptions{MaxDiffs: 2}); len(diffs) != 3 || !strings.Contains(diffs[2], "6 more") {
		t.Errorf("capped diffs: %q", diffs)
	}
}

// TestScanFSMatchesScanDir reads one tree through HostFS with ScanFS and
// directly with ScanDir: the manifests must agree (readlink moves symlink
// atimes between the two scans, so atime is left out).
func TestScanFSMatchesScanDir(t *testing.T) {
	RequireRoot(t)
	o := ExtTree()
	o.BigDir = 300
	dir := t.TempDir()
	if err := RichTree(dir, o); err != nil {
		t.Fatal(err)
	}
	want, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHostFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ScanFS(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != len(want.Entries) {
		t.Errorf("ScanFS found %d entries, ScanDir %d", len(got.Entries), len(want.Entries))
	}
	if diffs := Compare(want, got, CompareOptions{Fields: AllFields &^ FieldAtime}); len(diffs) > 0 {
		t.Errorf("ScanFS over HostFS differs from ScanDir:\n%s", strings.Join(diffs, "\n"))
	}
	f, err := h.Open(want.Get("sparse/hole-middle").Ino)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := f.Extents()
	if err != nil || len(exts) != 2 {
		t.Errorf("sparse/hole-middle extents %v, %v; want 2", exts, err)
	}
}

// skipShort skips tests that build image fixtures under go test -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds image fixtures; not with -short")
	}
}
