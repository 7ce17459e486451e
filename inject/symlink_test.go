package inject

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestDirSymlinks: GuestDir goes through symlinks as the guest would
// (relative from their directory, absolute from the volume's root, ".." in
// a target stopping at it; GuestDir itself is cleaned lexically, as every
// namespace path is), the actions name where things went, and a symlink
// loop is refused.
func TestGuestDirSymlinks(t *testing.T) {
	raw, off, size := gptFixture(t)
	img, _ := prepare(t, raw, "raw")
	ctx := context.Background()
	tree := filepath.Join(t.TempDir(), "x")
	os.MkdirAll(filepath.Join(tree, "usr", "lib"), 0o755)
	os.Symlink("usr/lib", filepath.Join(tree, "lib"))
	os.Symlink("/x/usr", filepath.Join(tree, "abs"))
	os.Symlink("../../../../x/usr/lib", filepath.Join(tree, "up"))
	os.Symlink("loop", filepath.Join(tree, "loop"))
	if _, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{tree}, GuestDir: "/p2", Now: now}); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(t.TempDir(), "mod.ko")
	os.WriteFile(mod, []byte("module\n"), 0o644)
	for _, tc := range []struct{ dir, want string }{
		{"/p2/x/lib/modules", "/p2/x/usr/lib/modules/mod.ko"},
		{"/p2/x/abs/lib", "/p2/x/usr/lib/mod.ko"},
		{"/p2/x/up/deeper", "/p2/x/usr/lib/deeper/mod.ko"},
	} {
		res, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{mod}, GuestDir: tc.dir, Parents: true, Now: now})
		if err != nil {
			t.Fatalf("%s: %v", tc.dir, err)
		}
		if got := res.Actions[len(res.Actions)-1].Path; got != tc.want {
			t.Errorf("%s: injected as %s, want %s", tc.dir, got, tc.want)
		}
	}
	_, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{mod}, GuestDir: "/p2/x/loop/a", Parents: true, Now: now})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "symlinks") {
		t.Errorf("symlink loop: %v", err)
	}
	view := checkImage(t, img, off, size, "after injecting through symlinks")
	mnt := mountView(t, view, off, size)
	for _, p := range []string{"x/usr/lib/modules/mod.ko", "x/usr/lib/mod.ko", "x/usr/lib/deeper/mod.ko"} {
		if got := string(readFile(t, filepath.Join(mnt, p))); got != "module\n" {
			t.Errorf("%s: %q", p, got)
		}
	}
}
