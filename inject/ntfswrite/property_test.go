package ntfswrite

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// mnode is the model of what the volume should hold.
type mnode struct {
	dir   bool
	sum   string // SHA-256 of a file's content
	size  int64
	mtime time.Time // zero: not checked
	attrs uint32    // Windows attributes, 0: not checked
}

type model map[string]*mnode

func modelOf(m *testimages.Manifest) model {
	out := model{}
	for _, e := range m.Entries {
		n := &mnode{dir: e.IsDir(), sum: e.SHA256, size: e.Size}
		if n.dir {
			n.size = 0
		}
		out[e.Path] = n
	}
	return out
}

func (m model) paths(dir bool) []string {
	var out []string
	for p, n := range m {
		if n.dir == dir && p != "." {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (m model) addFile(p string, data []byte, mtime time.Time, attrs uint32) {
	s := sha256.Sum256(data)
	m[p] = &mnode{sum: hex.EncodeToString(s[:]), size: int64(len(data)), mtime: mtime, attrs: attrs}
}

func propertySeed(t *testing.T) uint64 {
	if s := os.Getenv("NTFSWRITE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return 20240507
}

// TestPropertyRandomInjects writes random sequences of files (0 bytes to
// a few MiB, resident and not), directories, replacements and attribute
// changes into directories of 0 to 20,000 entries, with bursts of
// hundreds of files that split index blocks and grow trees a level; after
// each transaction ntfsfix -n and the structure check, at the end the
// ntfs-3g mount against the model and against our reader.
func TestPropertyRandomInjects(t *testing.T) {
	seed := propertySeed(t)
	steps := 10
	if testing.Short() {
		steps = 3
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			fx := getFixture(t, l)
			img := copyImage(t, fx.img)
			m := modelOf(fx.want)
			rng := rand.New(rand.NewPCG(seed, uint64(len(l.name))))
			ops := map[string]int{}
			for step := range steps {
				f := openImage(t, img)
				var log []string
				for range 1 + rng.IntN(4) {
					log = append(log, randomOp(t, f, m, rng, l))
				}
				apply(t, f, img)
				for _, e := range f.Events() {
					ops[e.Op]++
				}
				what := fmt.Sprintf("seed %d step %d (%s)", seed, step, strings.Join(log, "; "))
				ntfsfix(t, img, what)
				for _, p := range checkStructure(img) {
					t.Errorf("%s: %s", what, p)
				}
				if t.Failed() {
					t.FailNow()
				}
			}
			t.Logf("seed %d: %v", seed, ops)
			got := compareReaders(t, img)
			checkModel(t, got, m)
			checkGoNTFS(t, img, m)
		})
	}
}

func randomName(rng *rand.Rand, m model, dir string) string {
	for {
		var n string
		switch rng.IntN(8) {
		case 0:
			n = strings.Repeat("Long ", 20+rng.IntN(30)) + strconv.Itoa(rng.IntN(1e6))
		case 1:
			n = fmt.Sprintf("ütf8-ñame-%d", rng.IntN(1e6))
		case 2:
			n = fmt.Sprintf("Ω-Ψ-%d-日本", rng.IntN(1e6))
		case 3:
			n = fmt.Sprintf("F%d.TXT", rng.IntN(1e6)) // an 8.3 name
		case 4:
			n = fmt.Sprintf("file-%05d.txt-%d", rng.IntN(20000), rng.IntN(100))
		default:
			n = fmt.Sprintf("f%d", rng.IntN(1e9))
		}
		lower := strings.ToLower(path.Join(dir, n))
		clash := false
		for p := range m {
			if path.Dir(p) == dir && strings.ToLower(p) == lower {
				clash = true
				break
			}
		}
		if !clash {
			return n
		}
	}
}

func randomSize(rng *rand.Rand) int {
	switch rng.IntN(10) {
	case 0:
		return 0
	case 1:
		return rng.IntN(700) // resident
	case 2:
		return 1 << (9 + rng.IntN(8))
	case 3:
		return (1 + rng.IntN(3)) << 20
	}
	return rng.IntN(200000)
}

func randomTime(rng *rand.Rand) time.Time {
	return time.Unix(int64(rng.IntN(1<<31)), int64(rng.IntN(1e7))*100).UTC()
}

// randomOp does one random operation in the transaction and the model.
func randomOp(t *testing.T, f *FS, m model, rng *rand.Rand, l ntfsLayout) string {
	t.Helper()
	dirs := m.paths(true)
	dir := dirs[rng.IntN(len(dirs))]
	if rng.IntN(2) == 0 {
		sizes := dirSizes(l)
		dir = fmt.Sprintf("dirs/d%d", sizes[rng.IntN(len(sizes))])
	}
	dnum, err := lookupPath(f, dir)
	if err != nil {
		t.Fatal(err)
	}
	mtime := randomTime(rng)
	attrs := []uint32{0, FileAttrReadOnly, FileAttrHidden | FileAttrSystem, FileAttrNotContentIndexed | FileAttrArchive}[rng.IntN(4)]
	a := Attr{Attributes: attrs, Mtime: mtime, Atime: testTime, Btime: testTime}
	switch k := rng.IntN(100); {
	case k < 35:
		name := randomName(rng, m, dir)
		data := pattern(randomSize(rng), rng.IntN(1e6))
		if _, err := f.Create(dnum, name, a, content(data)); err != nil {
			t.Fatalf("create %s/%s (%d bytes): %v", dir, name, len(data), err)
		}
		if attrs == 0 {
			attrs = FileAttrArchive
		}
		m.addFile(path.Join(dir, name), data, mtime, attrs)
		return fmt.Sprintf("create %s/%.20s %d", dir, name, len(data))
	case k < 45:
		name := randomName(rng, m, dir)
		if _, err := f.Mkdir(dnum, name, a); err != nil {
			t.Fatalf("mkdir %s/%s: %v", dir, name, err)
		}
		m[path.Join(dir, name)] = &mnode{dir: true}
		return fmt.Sprintf("mkdir %s/%.20s", dir, name)
	case k < 70:
		files := m.paths(false)
		p := files[rng.IntN(len(files))]
		num, err := lookupPath(f, p)
		if err != nil {
			t.Fatal(err)
		}
		data := pattern(randomSize(rng), rng.IntN(1e6))
		ra := ReplaceAttr{Mtime: mtime, Atime: testTime}
		if rng.IntN(2) == 0 {
			ra.Attributes = &attrs
		}
		if err := f.Replace(num, content(data), ra); err != nil {
			t.Fatalf("replace %s (%d bytes): %v", p, len(data), err)
		}
		old := m[p]
		m.addFile(p, data, mtime, old.attrs)
		if ra.Attributes != nil {
			m[p].attrs = attrs
			if attrs == 0 {
				m[p].attrs = 0
			}
		}
		// Hardlinks share the content.
		for q, n := range m {
			if q != p && n.sum == old.sum && strings.HasPrefix(q, "files/medium") && strings.HasPrefix(p, "files/medium") {
				m[q] = m[p]
			}
		}
		return fmt.Sprintf("replace %.30s %d", p, len(data))
	case k < 75:
		files := m.paths(false)
		p := files[rng.IntN(len(files))]
		num, err := lookupPath(f, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.SetAttr(num, ReplaceAttr{Mtime: mtime, Attributes: &attrs}); err != nil {
			t.Fatalf("setattr %s: %v", p, err)
		}
		m[p].mtime, m[p].attrs = mtime, attrs
		return fmt.Sprintf("setattr %.30s", p)
	default:
		// Many small files at once: index blocks split, trees grow.
		count := 50 + rng.IntN(400)
		for range count {
			name := randomName(rng, m, dir)
			data := pattern(rng.IntN(2000), rng.IntN(1e6))
			if _, err := f.Create(dnum, name, a, content(data)); err != nil {
				t.Fatalf("create %s/%s: %v", dir, name, err)
			}
			at := attrs
			if at == 0 {
				at = FileAttrArchive
			}
			m.addFile(path.Join(dir, name), data, mtime, at)
		}
		return fmt.Sprintf("bulk %d into %s", count, dir)
	}
}

// checkModel compares the ntfs-3g manifest with the model.
func checkModel(t *testing.T, got *testimages.Manifest, m model) {
	t.Helper()
	seen := map[string]bool{}
	bad := 0
	for _, e := range got.Entries {
		seen[e.Path] = true
		n := m[e.Path]
		if n == nil {
			t.Errorf("%s: on disk, not in the model", e.Path)
			bad++
			continue
		}
		var diffs []string
		switch {
		case n.dir != e.IsDir():
			diffs = append(diffs, fmt.Sprintf("type %s", e.Type()))
		case !n.dir && (e.SHA256 != n.sum || e.Size != n.size):
			diffs = append(diffs, fmt.Sprintf("size %d sha %.8s, want %d %.8s", e.Size, e.SHA256, n.size, n.sum))
		}
		if !n.mtime.IsZero() && !e.Mtime.Equal(n.mtime) {
			diffs = append(diffs, fmt.Sprintf("mtime %v, want %v", e.Mtime, n.mtime))
		}
		if n.attrs != 0 {
			if v := e.Xattrs[testimages.XattrNTFSAttrib]; v != fmt.Sprintf("hex:%08x", n.attrs) {
				diffs = append(diffs, fmt.Sprintf("attributes %s, want %#x", v, n.attrs))
			}
		}
		if len(diffs) > 0 {
			t.Errorf("%s: %s", e.Path, strings.Join(diffs, "; "))
			if bad++; bad > 20 {
				t.Fatal("too many differences")
			}
		}
	}
	for p := range m {
		if !seen[p] {
			t.Errorf("%s: in the model, not on disk", p)
		}
	}
}
