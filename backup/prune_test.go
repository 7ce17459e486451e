package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// chainFixture is a repository with one VM "web" of five points (a full
// and four incrementals) made from a raw ext4 disk changed in between, and
// the disk's state at each point.
type chainFixture struct {
	dir    string   // repository
	states []string // raw image of each point's source, by point index
	ids    []string
}

func buildChain(t *testing.T, compress string) *chainFixture {
	t.Helper()
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "qemu-img", "mkfs.ext4", "losetup", "mount")
	disk := testimages.NewGuestDisk(t, testimages.GuestDiskOptions{Format: "raw", SizeMiB: 32})
	f := &chainFixture{dir: filepath.Join(t.TempDir(), "repo")}
	r, err := repo.OpenOrInit(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	src := &Images{Name: "web", Disks: []ImageDisk{{Target: "vda", Path: disk.Path}}}
	opts := Options{Now: testClock(), Compress: compress}
	for i := range 5 {
		if i > 0 {
			writeGuestFiles(t, disk.Path, map[string]string{
				fmt.Sprintf("/p%d.txt", i): strings.Repeat(fmt.Sprintf("point %d\n", i), 1000*i),
				"/etc/hostname":            fmt.Sprintf("host-%d\n", i),
			})
		}
		st := filepath.Join(t.TempDir(), fmt.Sprintf("state%d.raw", i))
		copySparse(t, disk.Path, st)
		f.states = append(f.states, st)
		res, err := Run(context.Background(), r, src, opts)
		if err != nil {
			t.Fatal(err)
		}
		f.ids = append(f.ids, res.Point.ID)
	}
	return f
}

// clone copies the fixture's repository.
func (f *chainFixture) clone(t *testing.T) *repo.Repo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	testimages.MustRun(t, "cp", "-a", "--sparse=always", f.dir, dir)
	r, err := repo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkListed checks every listed point of web: its image passes qemu-img
// check and reads as the source did at its time; it returns the ids.
func (f *chainFixture) checkListed(t *testing.T, r *repo.Repo) []string {
	t.Helper()
	points, errs, err := r.Points("web")
	if err != nil || len(errs) > 0 {
		t.Fatalf("Points: %v %v", err, errs)
	}
	folds, _ := r.Folds("web")
	var ids []string
	for _, p := range points {
		ids = append(ids, p.ID)
		i := slices.Index(f.ids, p.ID)
		img := p.Path("vda.qcow2")
		qemuCheck(t, img)
		qemuCompare(t, img, f.states[i])
		if _, err := r.Chain(p); err != nil {
			t.Errorf("chain of %s: %v", p.ID, err)
		}
		// A merge cut short leaves sizes in the manifest stale until it
		// is finished; the images themselves read right (checked above).
		if _, err := checkPoint(r, p); err != nil && len(folds) == 0 {
			t.Errorf("check of %s: %v", p.ID, err)
		}
	}
	return ids
}

func TestPruneMerges(t *testing.T) {
	for _, compress := range []string{"", "zstd"} {
		t.Run("compress="+compress, func(t *testing.T) {
			f := buildChain(t, compress)
			r := f.clone(t)
			ctx := context.Background()

			// Dry run: decisions and merges, nothing changes.
			res, err := Prune(ctx, r, "web", repo.Policy{Last: 2}, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Merges) != 3 || res.Merges[0].From != f.ids[2] || res.Merges[0].Into != f.ids[3] {
				t.Errorf("dry run merges %+v", res.Merges)
			}
			if ids := f.checkListed(t, r); len(ids) != 5 {
				t.Fatalf("dry run changed the points: %v", ids)
			}

			res, err = Prune(ctx, r, "web", repo.Policy{Last: 2}, false)
			if err != nil {
				t.Fatal(err)
			}
			if ids := f.checkListed(t, r); !slices.Equal(ids, f.ids[3:]) {
				t.Errorf("kept %v, want %v", ids, f.ids[3:])
			}
			p3, _ := r.Point("web/" + f.ids[3])
			if d := p3.Manifest.Disks[0]; p3.Manifest.Parent != "" || d.Backing != "" || d.Changes != repo.ChangesMerged || p3.Manifest.ChainLength != 1 {
				t.Errorf("merged point: parent %q backing %q changes %s chain %d", p3.Manifest.Parent, d.Backing, d.Changes, p3.Manifest.ChainLength)
			}
			if ents, _ := os.ReadDir(r.VMDir("web")); len(ents) != 4 { // .lock, latest, two points
				t.Errorf("leftovers in the VM directory: %v", ents)
			}

			// Forget refuses a point another depends on, merges with --merge.
			if _, err := Forget(ctx, r, "web/"+f.ids[3], false); !errors.Is(err, ErrDependents) {
				t.Errorf("forget of a parent: %v", err)
			}
			if _, err := Forget(ctx, r, "web/"+f.ids[3], true); err != nil {
				t.Fatal(err)
			}
			if ids := f.checkListed(t, r); !slices.Equal(ids, f.ids[4:]) {
				t.Errorf("after forget: %v", ids)
			}
		})
	}
}

// TestPruneCrashSafe stops the prune at every step of its merges, as a kill
// would: each time, every point still listed reads as it should, and the
// next prune finishes the job.
func TestPruneCrashSafe(t *testing.T) {
	f := buildChain(t, "")
	steps := []string{"journaled", "write", "written vda", "disk vda", "manifest", "removed"}
	for _, step := range steps {
		for _, nth := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s#%d", step, nth), func(t *testing.T) {
				r := f.clone(t)
				ctx := context.Background()
				seen := 0
				crash := errors.New("crash")
				foldHook = func(s string) error {
					if s == step {
						if seen++; seen == nth {
							return crash
						}
					}
					return nil
				}
				_, err := Prune(ctx, r, "web", repo.Policy{Last: 1}, false)
				foldHook = nil
				if !errors.Is(err, crash) {
					t.Fatalf("prune: %v, want the crash", err)
				}
				ids := f.checkListed(t, r)
				if !slices.Contains(ids, f.ids[4]) {
					t.Fatalf("kept point gone after the crash: %v", ids)
				}
				if _, err := Prune(ctx, r, "web", repo.Policy{Last: 1}, false); err != nil {
					t.Fatal(err)
				}
				if ids := f.checkListed(t, r); !slices.Equal(ids, f.ids[4:]) {
					t.Errorf("after recovery: %v", ids)
				}
				if folds, _ := r.Folds("web"); len(folds) != 0 {
					t.Errorf("fold journals left: %v", folds)
				}
			})
		}
	}
}
