package backup

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// hostOffsetOfData returns the file offset of the first data cluster of a
// qcow2 image's own layer, from qemu-img map.
func hostOffsetOfData(t *testing.T, img string) int64 {
	t.Helper()
	out := testimages.MustRun(t, "qemu-img", "map", "--output=json", img)
	var m []struct {
		Data   bool
		Depth  int
		Offset *int64
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	for _, e := range m {
		if e.Data && e.Depth == 0 && e.Offset != nil {
			return *e.Offset
		}
	}
	t.Fatalf("%s: no data cluster", img)
	return 0
}

func flipByte(t *testing.T, name string, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func verifyAll(t *testing.T, r *repo.Repo, ids ...string) map[string]*PointReport {
	t.Helper()
	reps, err := Verify(context.Background(), r, "web", ids, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*PointReport{}
	for _, rep := range reps {
		out[strings.TrimPrefix(rep.Point, "web/")] = rep
	}
	return out
}

func TestVerify(t *testing.T) {
	f := buildChain(t, "")
	r := f.clone(t)
	reps := verifyAll(t, r)
	for _, id := range f.ids {
		rep := reps[id]
		if rep == nil || !rep.OK {
			t.Fatalf("clean point %s: %+v", id, rep)
		}
		d := rep.Disks[0]
		if len(d.Filesystems) != 1 || d.Filesystems[0].Type != "ext4" || d.Filesystems[0].Entries < 10 || d.Filesystems[0].Error != "" {
			t.Errorf("point %s filesystems: %+v", id, d.Filesystems)
		}
	}
	if d := reps[f.ids[2]].Disks[0]; d.BlocksRead == 0 || d.BlocksRead > d.BlocksInherited {
		t.Errorf("an incremental read %d blocks, inherited %d", d.BlocksRead, d.BlocksInherited)
	}

	damage := []struct {
		name  string
		do    func(t *testing.T, p *repo.Point)
		fault string
	}{
		{"data cluster", func(t *testing.T, p *repo.Point) {
			flipByte(t, p.Path("vda.qcow2"), hostOffsetOfData(t, p.Path("vda.qcow2"))+100)
		}, "do not read as they were backed up"},
		{"truncated image", func(t *testing.T, p *repo.Point) {
			os.Truncate(p.Path("vda.qcow2"), p.Manifest.Disks[0].ImageSize-4096)
		}, "the manifest says"},
		{"hash list", func(t *testing.T, p *repo.Point) { flipByte(t, p.Path("vda.blockhashes"), 100) }, "hash list digest"},
		{"header", func(t *testing.T, p *repo.Point) { flipByte(t, p.Path("vda.qcow2"), 1) }, "vda"},
	}
	for _, dm := range damage {
		t.Run(dm.name, func(t *testing.T) {
			r := f.clone(t)
			p, err := r.Point("web/" + f.ids[2])
			if err != nil {
				t.Fatal(err)
			}
			dm.do(t, p)
			reps := verifyAll(t, r)
			for i, id := range f.ids {
				rep := reps[id]
				if i < 2 && !rep.OK {
					t.Errorf("point %s before the damage: %v", id, rep.Faults)
				}
				if i >= 2 && rep.OK {
					t.Errorf("point %s on or after the damage passed", id)
				}
			}
			if got := strings.Join(reps[f.ids[2]].Faults, "\n"); !strings.Contains(got, dm.fault) {
				t.Errorf("faults %q, want %q", got, dm.fault)
			}
			if got := strings.Join(reps[f.ids[3]].Faults, "\n"); !strings.Contains(got, "parent") {
				t.Errorf("child faults %q", got)
			}
			// One point asked: its ancestors are checked with it.
			if reps := verifyAll(t, r, f.ids[1]); len(reps) != 2 || !reps[f.ids[1]].OK {
				t.Errorf("verify of one point: %v", reps)
			}
		})
	}
}
