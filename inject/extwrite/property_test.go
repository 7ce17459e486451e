package extwrite

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// variant is a filesystem layout the property test writes into.
type variant struct {
	name    string
	mkfs    string
	args    []string
	sizeMiB int64
	// kernel says this kernel can mount it (else debugfs reads it back).
	kernel bool
}

var variants = []variant{
	{"ext2-1k", "mkfs.ext2", []string{"-b", "1024", "-I", "128"}, 48, true},
	{"ext2-rev0", "mkfs.ext2", []string{"-b", "1024", "-r", "0"}, 32, true},
	{"ext3", "mkfs.ext3", []string{"-b", "4096"}, 64, true},
	{"ext4", "mkfs.ext4", []string{"-b", "4096"}, 64, true},
	{"ext4-1k-csum", "mkfs.ext4", []string{"-b", "1024", "-O", "64bit,metadata_csum,metadata_csum_seed"}, 48, true},
	{"ext4-noextent", "mkfs.ext4", []string{"-b", "4096", "-O", "^extent,^flex_bg,^64bit"}, 64, true},
	{"ext4-uninit-crc16", "mkfs.ext4", []string{"-b", "1024", "-O", "^metadata_csum,uninit_bg"}, 48, true},
	{"ext4-inline", "mkfs.ext4", []string{"-b", "4096", "-O", "inline_data"}, 64, true},
	{"ext4-metabg", "mkfs.ext4", []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}, 48, true},
	{"ext4-largedir", "mkfs.ext4", []string{"-b", "1024", "-O", "large_dir"}, 48, true},
	{"ext4-128inode", "mkfs.ext4", []string{"-b", "4096", "-I", "128"}, 64, true},
	{"ext4-sparse2", "mkfs.ext4", []string{"-b", "1024", "-O", "sparse_super2"}, 48, true},
	{"ext4-2k-nocsum", "mkfs.ext4", []string{"-b", "2048", "-O", "^metadata_csum,^uninit_bg"}, 48, true},
	{"ext4-64k", "mkfs.ext4", []string{"-b", "65536"}, 512, false},
}

// mnode is the model of what the filesystem should hold.
type mnode struct {
	kind     byte // 'f', 'd', 'l'
	data     []byte
	target   string
	perm     uint16
	uid, gid uint32
	mtime    time.Time // zero: not checked
}

type model map[string]*mnode

func (m model) dirs() []string {
	var out []string
	for p, n := range m {
		if n.kind == 'd' {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (m model) of(kind byte) []string {
	var out []string
	for p, n := range m {
		if n.kind == kind {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// initialTree is what every variant starts with: small and big
// directories, small and bigger files, a deeper path.
func initialTree(m model) map[string]string {
	files := map[string]string{
		"etc/hostname":        "guest\n",
		"etc/fstab":           "/dev/vda1 / ext4 defaults 0 1\n",
		"etc/ssh/sshd_config": strings.Repeat("# config line\n", 40),
		"usr/share/doc/a.txt": strings.Repeat("doc ", 3000),
		"small/":              "",
		"home/user/.profile":  "export PS1='$ '\n",
	}
	for i := range 700 {
		files[fmt.Sprintf("big/entry-%04d-%s", i, strings.Repeat("n", i%40))] = strconv.Itoa(i)
	}
	m["."] = &mnode{kind: 'd', perm: 0o755}
	for p, c := range files {
		dir := path.Dir(strings.TrimSuffix(p, "/"))
		for dir != "." {
			m[dir] = &mnode{kind: 'd', perm: 0o755}
			dir = path.Dir(dir)
		}
		if strings.HasSuffix(p, "/") {
			m[strings.TrimSuffix(p, "/")] = &mnode{kind: 'd', perm: 0o755}
			continue
		}
		m[p] = &mnode{kind: 'f', data: []byte(c), perm: 0o644}
	}
	return files
}

func propertySeed(t *testing.T) uint64 {
	if s := os.Getenv("EXTWRITE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return 20240506
}

// TestPropertyRandomInjects writes random sequences of creations,
// directories, symlinks and replacements (sizes from 0 to a few MiB,
// directories grown past one block and htree leaves split) into every
// variant, checks e2fsck after each transaction and the kernel's (or
// debugfs's) view of the whole tree at the end.
func TestPropertyRandomInjects(t *testing.T) {
	testimages.RequireRoot(t)
	seed := propertySeed(t)
	steps := 14
	if testing.Short() {
		steps = 4
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			m := model{}
			files := initialTree(m)
			img := mkfsImage(t, v.mkfs, v.args, v.sizeMiB, files)
			// Index the directories bigger than a block, as a system that
			// ran e2fsck -D (or grew them with the kernel) would have them.
			exec.Command("e2fsck", "-fyD", img).Run()
			fsck(t, img, "fresh image")
			rng := rand.New(rand.NewPCG(seed, uint64(len(v.name))))
			ops := map[string]int{}
			for step := range steps {
				f, _ := openImage(t, img)
				var log []string
				for range 1 + rng.IntN(4) {
					log = append(log, randomOp(t, f, m, rng))
				}
				for _, e := range f.Events() {
					ops[e.Op]++
				}
				apply(t, f, img)
				fsck(t, img, fmt.Sprintf("seed %d step %d (%s)", seed, step, strings.Join(log, "; ")))
			}
			t.Logf("seed %d: %v", seed, ops)
			checkModel(t, img, v, m)
		})
	}
}

func randomName(rng *rand.Rand, m model, dir string) string {
	for {
		var n string
		switch rng.IntN(10) {
		case 0:
			n = strings.Repeat("L", 100+rng.IntN(155))
		case 1:
			n = fmt.Sprintf("ütf8-ñame-%d", rng.IntN(1e6))
		default:
			n = fmt.Sprintf("f%d", rng.IntN(1e9))
		}
		if _, ok := m[path.Join(dir, n)]; !ok {
			return n
		}
	}
}

func randomSize(rng *rand.Rand) int {
	switch rng.IntN(10) {
	case 0:
		return 0
	case 1:
		return rng.IntN(60)
	case 2:
		return 1 << (10 + rng.IntN(7)) // a whole number of small blocks
	case 3:
		return (1 + rng.IntN(3)) << 20
	case 4:
		return 1<<20 + rng.IntN(3<<20)
	}
	return rng.IntN(200000)
}

// randomOp does one random operation in the transaction and the model.
func randomOp(t *testing.T, f *FS, m model, rng *rand.Rand) string {
	t.Helper()
	dirs := m.dirs()
	dir := dirs[rng.IntN(len(dirs))]
	if rng.IntN(3) == 0 {
		dir = "big"
	}
	dino, err := lookupPath(f, dir)
	if err != nil {
		t.Fatal(err)
	}
	attr := Attr{Perm: uint16(0o600 + rng.IntN(0o200)), Uid: uint32(rng.IntN(70000)), Gid: uint32(rng.IntN(70000)),
		Mtime: time.Unix(int64(rng.IntN(1<<31)), int64(rng.IntN(1e9))), Atime: testTime}
	switch k := rng.IntN(100); {
	case k < 35:
		name := randomName(rng, m, dir)
		data := pattern(randomSize(rng), rng.IntN(1e6))
		if _, err := f.Create(dino, name, attr, content(data)); err != nil {
			t.Fatalf("create %s/%s (%d bytes): %v", dir, name, len(data), err)
		}
		m[path.Join(dir, name)] = &mnode{kind: 'f', data: data, perm: attr.Perm, uid: attr.Uid, gid: attr.Gid, mtime: attr.Mtime}
		return fmt.Sprintf("create %s/%.20s %d", dir, name, len(data))
	case k < 45:
		name := randomName(rng, m, dir)
		if _, err := f.Mkdir(dino, name, attr); err != nil {
			t.Fatalf("mkdir %s/%s: %v", dir, name, err)
		}
		m[path.Join(dir, name)] = &mnode{kind: 'd', perm: attr.Perm, uid: attr.Uid, gid: attr.Gid, mtime: attr.Mtime}
		return fmt.Sprintf("mkdir %s/%.20s", dir, name)
	case k < 55:
		name := randomName(rng, m, dir)
		target := strings.Repeat("t", 1+rng.IntN(200))
		if _, err := f.Symlink(dino, name, target, attr); err != nil {
			t.Fatalf("symlink %s/%s: %v", dir, name, err)
		}
		m[path.Join(dir, name)] = &mnode{kind: 'l', target: target, uid: attr.Uid, gid: attr.Gid, mtime: attr.Mtime}
		return fmt.Sprintf("symlink %s/%.20s %d", dir, name, len(target))
	case k < 75:
		fs := m.of('f')
		p := fs[rng.IntN(len(fs))]
		ino, err := lookupPath(f, p)
		if err != nil {
			t.Fatal(err)
		}
		data := pattern(randomSize(rng), rng.IntN(1e6))
		ra := ReplaceAttr{Mtime: attr.Mtime, Atime: attr.Atime}
		n := m[p]
		if rng.IntN(2) == 0 {
			ra.Perm, ra.Uid, ra.Gid = &attr.Perm, &attr.Uid, &attr.Gid
			n.perm, n.uid, n.gid = attr.Perm, attr.Uid, attr.Gid
		}
		if err := f.Replace(ino, content(data), ra); err != nil {
			t.Fatalf("replace %s (%d bytes): %v", p, len(data), err)
		}
		n.data, n.mtime = data, attr.Mtime
		return fmt.Sprintf("replace %.30s %d", p, len(data))
	case k < 80:
		ls := m.of('l')
		if len(ls) == 0 {
			return "no symlink to replace"
		}
		p := ls[rng.IntN(len(ls))]
		ino, err := lookupPath(f, p)
		if err != nil {
			t.Fatal(err)
		}
		target := strings.Repeat("r", 1+rng.IntN(200))
		if err := f.ReplaceSymlink(ino, target, ReplaceAttr{Mtime: attr.Mtime, Atime: attr.Atime}); err != nil {
			t.Fatalf("replace symlink %s: %v", p, err)
		}
		m[p].target, m[p].mtime = target, attr.Mtime
		return fmt.Sprintf("relink %.30s %d", p, len(target))
	default:
		// Many small files at once: directories grow, htree leaves split.
		count := 50 + rng.IntN(400)
		for range count {
			name := randomName(rng, m, dir)
			data := pattern(rng.IntN(100), rng.IntN(1e6))
			if _, err := f.Create(dino, name, attr, content(data)); err != nil {
				t.Fatalf("create %s/%s: %v", dir, name, err)
			}
			m[path.Join(dir, name)] = &mnode{kind: 'f', data: data, perm: attr.Perm, uid: attr.Uid, gid: attr.Gid, mtime: attr.Mtime}
		}
		return fmt.Sprintf("bulk %d into %s", count, dir)
	}
}

// checkModel compares the whole tree, as the kernel (or debugfs) reads it,
// with the model.
func checkModel(t *testing.T, img string, v variant, m model) {
	t.Helper()
	var root string
	if v.kernel {
		mnt, cleanup, err := testimages.LoopMount(img, 0, 0, false, "", "ro")
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		root = mnt
	} else {
		root = t.TempDir()
		if out, err := exec.Command("debugfs", "-R", "rdump / "+root, img).CombinedOutput(); err != nil {
			t.Fatalf("debugfs rdump: %v\n%s", err, out)
		}
	}
	got, err := testimages.ScanDir(root)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	bad := 0
	for _, e := range got.Entries {
		if e.Path == "lost+found" || strings.HasPrefix(e.Path, "lost+found/") {
			continue
		}
		seen[e.Path] = true
		n := m[e.Path]
		if n == nil {
			t.Errorf("%s: on disk, not in the model", e.Path)
			bad++
			continue
		}
		var diffs []string
		switch n.kind {
		case 'f':
			sum := sha256.Sum256(n.data)
			if e.Type() != "file" || e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != int64(len(n.data)) {
				diffs = append(diffs, fmt.Sprintf("content: type %s size %d, want %d bytes", e.Type(), e.Size, len(n.data)))
			}
		case 'd':
			if e.Type() != "dir" {
				diffs = append(diffs, "not a directory")
			}
		case 'l':
			if e.Type() != "symlink" || e.Target != n.target {
				diffs = append(diffs, fmt.Sprintf("symlink target %q, want %q", e.Target, n.target))
			}
		}
		if n.kind != 'l' && e.Mode&0o7777 != uint32(n.perm) && e.Path != "." {
			diffs = append(diffs, fmt.Sprintf("perm %#o, want %#o", e.Mode&0o7777, n.perm))
		}
		if v.kernel && (e.Uid != n.uid || e.Gid != n.gid) {
			diffs = append(diffs, fmt.Sprintf("owner %d:%d, want %d:%d", e.Uid, e.Gid, n.uid, n.gid))
		}
		if v.kernel && !n.mtime.IsZero() && n.kind != 'd' {
			want := n.mtime
			if !hasNsTimes(v) {
				want = want.Truncate(time.Second)
			}
			if !e.Mtime.Equal(want) {
				diffs = append(diffs, fmt.Sprintf("mtime %v, want %v", e.Mtime, want))
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

// hasNsTimes says whether the variant's inodes have room for nanoseconds.
func hasNsTimes(v variant) bool {
	for i, a := range v.args {
		if a == "-I" && i+1 < len(v.args) && v.args[i+1] == "128" {
			return false
		}
		if a == "-r" && i+1 < len(v.args) && v.args[i+1] == "0" {
			return false
		}
	}
	return true
}
