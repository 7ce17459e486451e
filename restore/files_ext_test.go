package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// restoreCompare is what a restored tree is compared on: everything a
// kernel mount shows but ctime (set by the kernel on every change),
// directory sizes and block counts (the host filesystem's choices), and
// birth times (the host's own).
func restoreCompare() testimages.CompareOptions {
	return testimages.CompareOptions{Fields: testimages.AllFields &^
		(testimages.FieldCtime | testimages.FieldDirSize | testimages.FieldBlocks | testimages.FieldBtime)}
}

// TestRestoreExtFixtures restores each ext fixture's whole volume with
// xattrs and owners and compares the result (ScanDir) with the fixture's
// oracle (a kernel loop mount of the image): every file type, hardlinks,
// sparse files, odd names, extreme times, ACLs and xattrs.
func TestRestoreExtFixtures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ext fixtures")
	}
	testimages.RequireRoot(t)
	for _, v := range testimages.ExtVariants {
		name := v.Name
		t.Run(name, func(t *testing.T) {
			x := testimages.GetExt(t, v)
			want, err := x.Oracle()
			if err != nil {
				t.Fatal(err)
			}
			src, err := ImageSource(context.Background(), []string{x.Image}, "raw")
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			items, _, err := src.Items([]string{"/fs"}, false)
			if err != nil {
				t.Fatal(err)
			}
			dest := fastTempDir(t)
			var errs []string
			start := time.Now()
			sum, err := RestoreFiles(context.Background(), dest, items, FilesOptions{Owners: true, Xattrs: true,
				OnError: func(g string, err error) { errs = append(errs, ShowPath(g)+": "+err.Error()) }})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v in %v", name, *sum, time.Since(start).Round(time.Millisecond))
			if len(errs) > 0 {
				t.Errorf("%d errors:\n%s", len(errs), strings.Join(errs[:min(len(errs), 20)], "\n"))
			}
			got, err := testimages.ScanDir(filepath.Join(dest, "fs"))
			if err != nil {
				t.Fatal(err)
			}
			co := restoreCompare()
			if v.Oracle == "fuse2fs" {
				// fuse2fs wrote these ACLs without updating the mode
				// to match (mode 0755, ACL rw-/r--/---); a kernel
				// keeps the two in step, so a restore can match one
				// but not both.
				co.IgnorePaths = []string{"rw/xattr/acl-dir", "rw/xattr/acl-file"}
			}
			if d := testimages.Compare(want, got, co); len(d) > 0 {
				t.Errorf("restored tree differs from the oracle (-want +got):\n%s", strings.Join(d, "\n"))
			}
			checkSparse(t, want, filepath.Join(dest, "fs"))
		})
	}
}

// checkSparse checks that files sparse in the oracle are sparse restored.
func checkSparse(t *testing.T, want *testimages.Manifest, root string) {
	t.Helper()
	n := 0
	for _, e := range want.Entries {
		if e.Type() != "file" || e.Blocks*512 >= e.Size || e.Size < 1<<20 {
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, e.Path))
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Blocks*512 >= st.Size {
			t.Errorf("%s: %d bytes in %d blocks restored, sparse in the guest (%d blocks)", e.Path, st.Size, st.Blocks, e.Blocks)
		}
		n++
	}
	if n == 0 {
		t.Errorf("no sparse file of 1 MiB or more in the oracle")
	}
}

// fastTempDir is a directory for restored trees on tmpfs (/dev/shm) when
// there is one, which holds every file type, xattrs and ACLs and keeps
// the tests' time on the code rather than on the host disk.
func fastTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "vmmount-restore-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
