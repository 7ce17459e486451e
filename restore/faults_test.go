package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// bigTree is a memFS of n files of size bytes each in d/.
func bigTree(n, size int) *memFS {
	m := newMemFS()
	d := m.dir(1, "d")
	for i := range n {
		b := []byte(strings.Repeat(fmt.Sprintf("file %03d", i), size/8+1))[:size]
		m.add(d, fmt.Sprintf("f%03d", i), &memNode{st: fsys_Reg(), data: b})
	}
	return m
}

// checkComplete fails for any regular file under root whose size is not
// the guest's: a restore that stops must not leave truncated files.
func checkComplete(t *testing.T, root string, size int64) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			if fi.Size() != size {
				t.Errorf("%s: %d bytes left, want the whole %d or nothing", p, fi.Size(), size)
			}
			n++
		}
		return nil
	})
	return n
}

// TestTargetFull restores onto a 1 MiB tmpfs: the restore stops with
// ENOSPC, says so, and leaves no partly written file.
func TestTargetFull(t *testing.T) {
	testimages.RequireRoot(t)
	dest := t.TempDir()
	if err := syscall.Mount("tmpfs", dest, "tmpfs", 0, "size=1m"); err != nil {
		testimages.Missing(t, "mounting a tmpfs: %v", err)
	}
	defer syscall.Unmount(dest, 0)
	m := bigTree(40, 100<<10)
	sum, err := RestoreFiles(context.Background(), dest, m.item("m"), FilesOptions{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("restore onto a full target: %v, want ENOSPC", err)
	}
	if sum == nil || !strings.Contains(sum.Stopped, "no space") {
		t.Errorf("summary %+v does not say why it stopped", sum)
	}
	n := checkComplete(t, dest, 100<<10)
	t.Logf("%d complete files, %+v", n, *sum)
	if n == 0 || n >= 40 {
		t.Errorf("%d files restored, want some but not all", n)
	}
}

// TestInterrupted cancels a restore midway: it returns context.Canceled
// and leaves only complete files.
func TestInterrupted(t *testing.T) {
	for _, tarOut := range []bool{false, true} {
		t.Run(map[bool]string{false: "dir", true: "tar"}[tarOut], func(t *testing.T) {
			m := bigTree(60, 256<<10)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := &cancelAfter{n: 3 << 20, cancel: cancel}
			dest := fastTempDir(t)
			var sum *Summary
			var err error
			if tarOut {
				f, _ := os.Create(filepath.Join(dest, "out.tar"))
				sum, err = WriteTar(ctx, f, m.item("m"), TarOptions{Progress: p})
				f.Close()
			} else {
				sum, err = RestoreFiles(ctx, dest, m.item("m"), FilesOptions{Progress: p})
			}
			if !errors.Is(err, context.Canceled) || sum.Stopped != "interrupted" {
				t.Fatalf("interrupted restore: %v, %+v", err, sum)
			}
			if !tarOut {
				n := checkComplete(t, dest, 256<<10)
				if n == 0 || n >= 60 {
					t.Errorf("%d files restored, want some but not all", n)
				}
			}
		})
	}
}

type cancelAfter struct {
	n      int64
	done   atomic.Int64
	cancel func()
}

func (c *cancelAfter) Start(string, int64) {}
func (c *cancelAfter) Finish()             {}
func (c *cancelAfter) Add(n int64) {
	if c.done.Add(n) >= c.n {
		c.cancel()
	}
}
