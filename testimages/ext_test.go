package testimages

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestExtVariants builds every ext variant and checks its oracle holds
// the features the recipe promises.
func TestExtVariants(t *testing.T) {
	skipShort(t)
	RequireRoot(t)
	RequireTools(t, ExtTools...)
	vs := ExtVariants
	if os.Getenv("VMMOUNT_BIG_FIXTURES") == "1" {
		vs = append(slices.Clone(vs), ExtBigVariant)
	}
	if err := PrebuildExt(vs...); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			x := GetExt(t, v)
			m, err := x.Oracle()
			if err != nil {
				t.Fatal(err)
			}
			checkExtOracle(t, x, m)
		})
	}
}

func checkExtOracle(t *testing.T, x *ExtImage, m *Manifest) {
	t.Helper()
	v := x.Variant
	for _, e := range m.Entries {
		if e.Err != "" {
			t.Errorf("oracle %s: %s", e.Path, e.Err)
		}
	}
	if len(m.Entries) < 5000 {
		t.Errorf("oracle has %d entries", len(m.Entries))
	}
	// Both the mkfs -d tree and the kernel-written rw/ tree.
	for _, pre := range []string{"", "rw/"} {
		groups := 0
		for _, g := range m.HardlinkGroups() {
			if strings.HasPrefix(g[0], pre+"hardlinks/") {
				groups++
			}
		}
		if groups < 3 {
			t.Errorf("%shardlinks: %d hardlink groups, want at least 3", pre, groups)
		}
		if e := m.Get(pre + "xattr/acl-dir"); e == nil || e.Xattrs["system.posix_acl_default"] == "" {
			t.Errorf("%sxattr/acl-dir: no default ACL", pre)
		}
		if e := m.Get(pre + "xattr/user"); e == nil || e.Xattrs["user.comment"] != "text:hello, world" {
			t.Errorf("%sxattr/user: no user.comment", pre)
		}
		if e := m.Get(pre + "special/chr-300-70000"); e == nil || e.Rdev == 0 {
			t.Errorf("%sspecial/chr-300-70000: missing or no rdev", pre)
		}
		wide := slices.Contains(x.Features, "extra_isize") || !slices.Contains(v.Args, "128")
		if e := m.Get(pre + "times/y2446-ext-max"); wide && (e == nil || e.Mtime.Year() != 2446) {
			t.Errorf("%stimes/y2446-ext-max: not in 2446: %+v", pre, e)
		}
		if e := m.Get(pre + "times/y2020-ns"); wide && (e == nil || e.Mtime.Nanosecond() != 987654321) {
			t.Errorf("%stimes/y2020-ns: nanoseconds lost: %+v", pre, e)
		}
	}
	if !v.NoFallocate {
		if e := m.Get("rw/prealloc/keep-size"); e == nil || e.Size != 10 || e.Blocks < 1<<20/512 {
			t.Errorf("rw/prealloc/keep-size: want 10 bytes with 1 MiB allocated: %+v", e)
		}
	}
	if oracleName(v) == "kernel" && !slices.Contains(v.Args, "128") {
		if e := m.Get("rw/files/text.txt"); e == nil || e.Btime.IsZero() {
			t.Errorf("kernel oracle has no birth time: %+v", e)
		}
	}
	if v.LargeXattr {
		if e := m.Get("rw/xattr/huge"); e == nil || !strings.HasSuffix(e.Xattrs["user.huge"], "/40000") {
			t.Errorf("rw/xattr/huge: no 40000-byte xattr: %+v", e)
		}
	}
	if v.Casefold {
		if e := m.Get("cf/Straße.txt"); e == nil {
			t.Errorf("cf/Straße.txt missing")
		}
	}
	if v.Journal {
		if len(x.JournalOnly) == 0 {
			t.Error("no JournalOnly paths")
		}
		for _, p := range x.JournalOnly {
			if m.Get(p) == nil {
				t.Errorf("%s: in the journal but not in the recovered oracle", p)
			}
		}
	}
}

// TestFuse2fsAgreesWithKernel validates fuse2fs (with times from debugfs),
// the oracle of the variants this kernel cannot mount, against the kernel
// on one it can.
func TestFuse2fsAgreesWithKernel(t *testing.T) {
	skipShort(t)
	x := GetExt(t, ExtVariants[slices.IndexFunc(ExtVariants, func(v ExtVariant) bool { return v.Name == "ext4" })])
	want, err := x.Oracle()
	if err != nil {
		t.Fatal(err)
	}
	v := x.Variant
	v.Oracle = "fuse2fs"
	got, err := extOracle(x.Image, v)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Compare(want, got, CompareOptions{Fields: AllFields}) {
		t.Error(d)
	}
}

func TestFakeUUID(t *testing.T) {
	u := fakeUUID("x")
	if len(u) != 36 || u[14] != '4' || !strings.ContainsAny(u[19:20], "89ab") || u != fakeUUID("x") || u == fakeUUID("y") {
		t.Errorf("fakeUUID = %s", u)
	}
}
