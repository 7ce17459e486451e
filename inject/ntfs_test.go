package inject

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/testimages"
)

// ntfsFixture returns the GPT disk fixture and its NTFS volume (p3, the
// rich ntfs-3g fixture: compressed directory, fragmented files with
// attribute lists, streams, junctions).
func ntfsFixture(t *testing.T) (raw string, off, size int64) {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "ntfsfix", "ntfs-3g", "cmp")
	d := testimages.GetDisk(t, "gpt")
	for _, v := range d.Volumes {
		if v.Name == "p3" && v.FS == "ntfs" {
			return d.Images[0], v.Offset, v.Size
		}
	}
	t.Fatal("gpt fixture has no NTFS p3")
	return "", 0, 0
}

// ntfsSources is a host tree for NTFS: no symlinks, names Windows takes.
func ntfsSources(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"drivers/viostor.sys":                   pat(200000, 1),
		"drivers/inf/viostor.inf":               []byte("[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n"),
		"drivers/Ünïcödé ñame.txt":              []byte("unicode\r\n"),
		"drivers/" + strings.Repeat("Long", 50): []byte("long name\r\n"),
		"CONFIG.INI":                            []byte("[boot]\r\n"),
		"empty":                                 nil,
		"big.bin":                               pat(3<<20+777, 2),
	}
	mt := time.Date(2021, 2, 3, 4, 5, 6, 700000000, time.UTC)
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, c, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func pat(n, seed int) []byte { return testimages.Pattern(n, seed) }

// ntfsPart extracts the NTFS volume of an image's guest view into a file
// and checks it with ntfsfix -n.
func ntfsPart(t *testing.T, img string, off, size int64, what string) string {
	t.Helper()
	if strings.HasSuffix(img, ".qcow2") {
		if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
			t.Fatalf("%s: qemu-img check: %v\n%s", what, err, out)
		}
		img = asRaw(t, img)
	}
	part := filepath.Join(t.TempDir(), "ntfs.img")
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	out, err := exec.Command("ntfsfix", "-n", part).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "processed successfully") {
		t.Fatalf("%s: ntfsfix -n: %v\n%s", what, err, out)
	}
	return part
}

// mountNTFS mounts an NTFS volume file read-only with ntfs-3g.
func mountNTFS(t *testing.T, part string) string {
	t.Helper()
	mnt := t.TempDir()
	umount, err := testimages.FuseMount(mnt, "ntfs-3g", "-o", "ro,no_detach,streams_interface=xattr", part, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := umount(); err != nil {
			t.Error(err)
		}
	})
	return mnt
}

// sameNTFSTree compares an injected tree under mnt with its source:
// types, sizes, content, mtimes.
func sameNTFSTree(t *testing.T, src, mnt string) {
	t.Helper()
	want, err := testimages.ScanDir(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testimages.ScanDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	o := testimages.CompareOptions{Fields: testimages.FieldType | testimages.FieldSize | testimages.FieldContent | testimages.FieldMtime,
		SkipDirTimes: true, IgnorePaths: []string{"."}}
	if diffs := testimages.Compare(want, got, o); len(diffs) > 0 {
		t.Errorf("injected tree differs from its source (-src +guest):\n%s", strings.Join(diffs, "\n"))
	}
}

// TestNTFSInjectAndUndo injects a tree into an NTFS volume and replaces a
// file that has alternate data streams, in raw and qcow2 images; after
// each, ntfsfix -n is happy and ntfs-3g shows the files as their sources
// (and the streams kept); undoing both gives the image back byte for
// byte.
func TestNTFSInjectAndUndo(t *testing.T) {
	raw, off, size := ntfsFixture(t)
	for _, form := range []string{"raw", "qcow2"} {
		t.Run(form, func(t *testing.T) {
			img, _ := prepare(t, raw, form)
			orig := img + ".orig"
			if _, err := testimages.Run("cp", "--sparse=always", img, orig); err != nil {
				t.Fatal(err)
			}
			src := ntfsSources(t)
			ctx := context.Background()
			ents, _ := os.ReadDir(src)
			var srcs []string
			for _, e := range ents {
				srcs = append(srcs, filepath.Join(src, e.Name()))
			}
			res1, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: srcs,
				GuestDir: "/p3/Windows/Inject", Parents: true, UndoFile: filepath.Join(t.TempDir(), "one.undo"), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if res1.FS != "ntfs" || len(res1.Actions) != 11 {
				t.Errorf("result: fs %s, %d actions: %+v", res1.FS, len(res1.Actions), res1.Actions)
			}
			mnt := mountNTFS(t, ntfsPart(t, img, off, size, "after the injection"))
			sameNTFSTree(t, src, filepath.Join(mnt, "Windows", "Inject"))

			repl := filepath.Join(t.TempDir(), "streams")
			if err := os.WriteFile(repl, []byte("new main data\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			res2, err := Run(ctx, Options{Target: Target{Images: []string{img}}, Sources: []string{repl},
				GuestDir: "/p3/x", Overwrite: true, UndoFile: filepath.Join(t.TempDir(), "two.undo"), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			mnt = mountNTFS(t, ntfsPart(t, img, off, size, "after the replacement"))
			if got := string(readFile(t, filepath.Join(mnt, "x", "streams"))); got != "new main data\n" {
				t.Errorf("replaced file holds %q", got)
			}
			v := make([]byte, 100)
			if n, err := unix.Getxattr(filepath.Join(mnt, "x", "streams"), "user.small", v); err != nil || string(v[:n]) != "tiny" {
				t.Errorf("the replaced file's stream: %q, %v", v[:max(n, 0)], err)
			}

			if _, err := Undo(ctx, res1.UndoFile, UndoOptions{}); !errors.Is(err, ErrChanged) {
				t.Fatalf("undoing the first injection under the second: %v, want ErrChanged", err)
			}
			for _, u := range []string{res2.UndoFile, res1.UndoFile} {
				if _, err := Undo(ctx, u, UndoOptions{}); err != nil {
					t.Fatalf("undo %s: %v", u, err)
				}
			}
			sameFile(t, img, orig, "image after undoing both")
		})
	}
}

// TestNTFSRefusals: what the NTFS writer refuses writes nothing and says
// why.
func TestNTFSRefusals(t *testing.T) {
	raw, _, _ := ntfsFixture(t)
	img, _ := prepare(t, raw, "raw")
	sum := fileSum(t, img)
	src := ntfsSources(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink("target", link); err != nil {
		t.Fatal(err)
	}
	colon := filepath.Join(t.TempDir(), "a:b")
	if err := os.WriteFile(colon, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(t.TempDir(), "X")
	if err := os.WriteFile(upper, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	frag := filepath.Join(t.TempDir(), "fragmented")
	if err := os.WriteFile(frag, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mode := uint16(0o600)
	for _, tc := range []struct {
		name string
		o    Options
		text string
	}{
		{"owner", Options{Sources: []string{src + "/empty"}, GuestDir: "/p3", Owner: &Owner{1, 1}}, "--owner"},
		{"mode", Options{Sources: []string{src + "/empty"}, GuestDir: "/p3", Mode: &mode}, "--mode"},
		{"symlink", Options{Sources: []string{link}, GuestDir: "/p3"}, "symlinks"},
		{"windows name", Options{Sources: []string{colon}, GuestDir: "/p3"}, "Windows does not allow"},
		{"case", Options{Sources: []string{upper}, GuestDir: "/p3"}, "differ only in case"},
		{"compressed directory", Options{Sources: []string{src + "/empty"}, GuestDir: "/p3/x/compressed"}, "compressed"},
		{"junction", Options{Sources: []string{src + "/empty"}, GuestDir: "/p3/x/win/junction"}, "not a directory"},
		{"attribute list", Options{Sources: []string{frag}, GuestDir: "/p3/sparse", Overwrite: true}, "attribute list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Target, o.Now = Target{Images: []string{img}}, now
			_, err := Run(context.Background(), o)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%v, want refused mentioning %q", err, tc.text)
			}
		})
	}
	if matches, _ := filepath.Glob(img + ".inject-*"); len(matches) > 0 {
		t.Errorf("refused runs left %v", matches)
	}
	if fileSum(t, img) != sum {
		t.Fatal("refused runs changed the image")
	}
}

// TestNTFSRollback fails NTFS commits part way (a source that changes
// under the writer, a failed verification) and expects the image back
// byte for byte; a commit stopped as by a crash is undone from the undo
// file alone.
func TestNTFSRollback(t *testing.T) {
	raw, off, size := ntfsFixture(t)
	for _, form := range []string{"raw", "qcow2"} {
		for _, point := range []string{"write", "before-verify", "crash"} {
			t.Run(form+"/"+point, func(t *testing.T) {
				img, _ := prepare(t, raw, form)
				orig := img + ".orig"
				if _, err := testimages.Run("cp", "--sparse=always", img, orig); err != nil {
					t.Fatal(err)
				}
				src := ntfsSources(t)
				huge := filepath.Join(src, "huge.bin")
				if err := os.WriteFile(huge, pat(20<<20, 3), 0o644); err != nil {
					t.Fatal(err)
				}
				n := 0
				testHook = func(p string) error {
					switch {
					case point == "write" && (p == "raw-batch" || p == "qcow2-write"):
						if n++; n == 2 {
							return os.WriteFile(filepath.Join(src, "CONFIG.INI"), []byte("changed!"), 0o644)
						}
					case point == "crash" && (p == "raw-batch" || p == "qcow2-write"):
						if n++; n == 2 {
							return errCrash
						}
					case point == "before-verify" && p == point:
						return os.WriteFile(filepath.Join(src, "big.bin"), []byte("changed after writing"), 0o644)
					}
					return nil
				}
				defer func() { testHook = nil }()
				undo := filepath.Join(t.TempDir(), "x.undo")
				_, err := Run(context.Background(), Options{Target: Target{Images: []string{img}},
					Sources: []string{huge, filepath.Join(src, "big.bin"), filepath.Join(src, "CONFIG.INI")}, GuestDir: "/p3",
					UndoFile: undo, Now: now})
				testHook = nil
				if point == "crash" {
					if !errors.Is(err, errCrash) {
						t.Fatalf("Run = %v, want the simulated crash", err)
					}
					r, err := Undo(context.Background(), undo, UndoOptions{})
					if err != nil || !r.Interrupted {
						t.Fatalf("undo: %+v, %v", r, err)
					}
				} else if !errors.Is(err, ErrRolledBack) {
					t.Fatalf("Run = %v, want a rollback", err)
				}
				sameFile(t, img, orig, "after the rollback")
				ntfsPart(t, img, off, size, "after the rollback")
			})
		}
	}
}
