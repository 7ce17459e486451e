package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// TestConcurrentAttacker restores while another process-like goroutine
// keeps moving every directory and file in DEST aside and putting a
// symlink to outside in its place. The restore may fail entries, but
// nothing may be written outside DEST.
func TestConcurrentAttacker(t *testing.T) {
	for _, policy := range []Existing{Refuse, Overwrite} {
		t.Run([]string{"refuse", "overwrite"}[policy], func(t *testing.T) {
			dest, out, check := outside(t)
			m := newMemFS()
			for i := range 30 {
				d := m.dir(1, fmt.Sprintf("dir%02d", i))
				sub := m.dir(d, "sub")
				for j := range 15 {
					f := m.file(sub, fmt.Sprintf("f%02d", j), fmt.Sprintf("data %d %d", i, j))
					if j == 0 {
						m.nodes[f].st.Nlink = 2
						m.link(d, "hardlink", f)
					}
				}
				m.symlink(d, "link", "../../..")
				m.add(d, "fifo", &memNode{st: fsys.Stat{Mode: fsys.S_IFIFO | 0o600}})
			}
			var stop atomic.Bool
			var moves atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := 0
				for !stop.Load() {
					filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
						if err != nil || p == dest || stop.Load() {
							return nil
						}
						n++
						aside := filepath.Join(filepath.Dir(p), fmt.Sprintf(".aside-%d", n))
						if os.Rename(p, aside) == nil {
							target := out
							if !fi.IsDir() {
								target = filepath.Join(out, "victim")
							}
							os.Symlink(target, p)
							moves.Add(1)
						}
						if fi.IsDir() {
							return filepath.SkipDir
						}
						return nil
					})
				}
			}()
			var log errLog
			sum, err := RestoreFiles(context.Background(), dest, m.item("m"), FilesOptions{Existing: policy, Owners: true, Workers: 4, OnError: log.add})
			stop.Store(true)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d entries moved aside; %+v", moves.Load(), *sum)
			check()
		})
	}
}
