package restore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestImagesAllVolumes restores "/" of a VM's two disk images (the LVM
// fixture: a volume group across both, linear, striped, raid1 and mirror
// LVs) and compares every volume that has an oracle.
func TestImagesAllVolumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds disk fixtures")
	}
	d := testimages.GetDisk(t, "lvm")
	ctx := context.Background()
	src, err := ImageSource(ctx, d.Images, "raw")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	items, warns, err := src.Items([]string{"/"}, false)
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, it := range items {
		rels = append(rels, strings.Join(it.Rel, "/"))
	}
	t.Logf("items %q; left out %q", rels, warns)
	dest := fastTempDir(t)
	var log errLog
	sum, err := RestoreFiles(ctx, dest, items, FilesOptions{Owners: true, Xattrs: true, OnError: log.add})
	if err != nil {
		t.Fatal(err)
	}
	if len(log.errs) > 0 {
		t.Errorf("errors: %v", log.errs)
	}
	t.Logf("%+v", *sum)
	n := 0
	for _, v := range d.Volumes {
		if v.OracleFile == "" {
			continue
		}
		want, err := testimages.ReadJSON(v.OracleFile)
		if err != nil {
			t.Fatal(err)
		}
		vol := src.Set.Volumes()
		var rel string
		for _, sv := range vol {
			if sv.Name == v.Name || (sv.LV != nil && sv.LV.VG+"/"+sv.LV.LV == v.Name) {
				rel = strings.TrimPrefix(sv.Path, "/")
			}
		}
		if rel == "" {
			t.Errorf("volume %s not found in the set", v.Name)
			continue
		}
		got, err := testimages.ScanDir(filepath.Join(dest, rel))
		if err != nil {
			t.Fatal(err)
		}
		co := volumeCompare(v, want)
		if diff := testimages.Compare(want, got, co); len(diff) > 0 {
			t.Errorf("%s differs from its oracle:\n%s", rel, strings.Join(diff, "\n"))
		}
		n++
	}
	if n == 0 {
		t.Errorf("no volume with an oracle")
	}
}
