package ext

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// TestSharedVariants runs the project's ext fixtures (testimages
// ExtVariants: RichTree plus a kernel-written subtree, large_dir, casefold
// and 64 KiB blocks checked against fuse2fs, a crash copy with a journal
// and an orphan) against their oracles, field by field.
func TestSharedVariants(t *testing.T) {
	vs := testimages.ExtVariants
	if os.Getenv("VMMOUNT_BIG_FIXTURES") == "1" {
		vs = append(vs, testimages.ExtBigVariant)
	}
	testimages.RequireRoot(t)
	testimages.RequireTools(t, testimages.ExtTools...)
	if err := testimages.PrebuildExt(vs...); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			x := testimages.GetExt(t, v)
			want, err := x.Oracle()
			if err != nil {
				t.Fatal(err)
			}
			f := openImage(t, x.Image)
			if info := f.Info(); info.UUID != x.UUID || info.Label != x.Label || info.BlockSize != int64(x.BlockSize) {
				t.Errorf("Info %+v; want uuid %s label %s block size %d", info, x.UUID, x.Label, x.BlockSize)
			}
			got, err := testimages.ScanFS(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range testimages.Compare(want, got, testimages.ExtCompare()) {
				t.Error(d)
			}
			for _, p := range x.JournalOnly {
				if _, err := resolve(f, p); err != nil {
					t.Errorf("%s (only in the journal): %v", p, err)
				}
			}
			if len(x.JournalOnly) > 0 {
				r, err := os.Open(x.Image)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				st, _ := r.Stat()
				raw, err := Open(r, st.Size(), Options{Name: "raw", NoJournalReplay: true})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := resolve(raw, x.JournalOnly[0]); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("without replay %s: %v, want not found", x.JournalOnly[0], err)
				}
			}
		})
	}
}

// resolve walks a slash-separated path without following symlinks.
func resolve(f *FS, p string) (uint64, error) {
	ino := f.Root()
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." {
			continue
		}
		var err error
		if ino, err = f.Lookup(ino, c); err != nil {
			return 0, err
		}
	}
	return ino, nil
}
