package ntfswrite

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path"
	"strings"
	"testing"

	"www.velocidex.com/golang/go-ntfs/parser"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// checkGoNTFS reads the files the test wrote (those with an mtime in the
// model) with go-ntfs, an independent NTFS parser: each name must be in
// its directory's index pointing to the record our reader finds, and the
// record's unnamed $DATA must hold the model's content.
func checkGoNTFS(t *testing.T, img string, m model) {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	r, err := ntfs.Open(fh, st.Size(), ntfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := parser.GetNTFSContext(fh, 0)
	if err != nil {
		t.Fatalf("go-ntfs: %v", err)
	}
	defer ctx.Close()
	resolve := func(p string) (uint64, error) {
		num := r.Root()
		for _, c := range strings.Split(p, "/") {
			var err error
			if num, err = r.Lookup(num, c); err != nil {
				return 0, err
			}
		}
		return num, nil
	}
	dirs := map[uint64]map[string]uint64{}
	bad, checked := 0, 0
	for p, n := range m {
		if n.dir || n.mtime.IsZero() {
			continue
		}
		if bad > 10 {
			t.Fatal("too many differences")
		}
		dnum, err := resolve(path.Dir(p))
		if path.Dir(p) == "." {
			dnum, err = r.Root(), nil
		}
		num, err2 := resolve(p)
		if err != nil || err2 != nil {
			t.Errorf("fsread/ntfs: %s: %v %v", p, err, err2)
			bad++
			continue
		}
		names, ok := dirs[dnum]
		if !ok {
			d, err := ctx.GetMFT(int64(dnum))
			if err != nil {
				t.Fatalf("go-ntfs: directory %d: %v", dnum, err)
			}
			names = map[string]uint64{}
			for _, e := range d.Dir(ctx) {
				names[e.File().Name()] = e.MftReference()
			}
			dirs[dnum] = names
		}
		if got, ok := names[path.Base(p)]; !ok || got != num {
			t.Errorf("go-ntfs: %s: index says record %d (found %v), fsread/ntfs %d", p, got, ok, num)
			bad++
			continue
		}
		e, err := ctx.GetMFT(int64(num))
		if err != nil {
			t.Errorf("go-ntfs: %s: %v", p, err)
			bad++
			continue
		}
		h := sha256.New()
		if n.size > 0 {
			s, err := parser.OpenStream(ctx, e, 128, parser.WILDCARD_STREAM_ID, "")
			if err != nil {
				t.Errorf("go-ntfs: %s: %v", p, err)
				bad++
				continue
			}
			if _, err := io.Copy(h, io.NewSectionReader(s, 0, n.size)); err != nil {
				t.Errorf("go-ntfs: %s: %v", p, err)
				bad++
				continue
			}
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != n.sum {
			t.Errorf("go-ntfs: %s: sha %.8s, want %.8s", p, got, n.sum)
			bad++
		}
		checked++
	}
	t.Logf("go-ntfs read %d files", checked)
}
