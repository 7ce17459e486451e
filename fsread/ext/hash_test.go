package ext

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/testimages"
)

// TestDirHashAgainstDebugfs compares every hash algorithm, signed and
// unsigned, with and without a seed, with e2fsprogs' debugfs dx_hash, on
// names that exercise the padding (every length to 255) and the sign of
// bytes >= 0x80.
func TestDirHashAgainstDebugfs(t *testing.T) {
	testimages.RequireTools(t, "debugfs", "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if err := testimages.Truncate(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", img)
	rng := rand.New(rand.NewPCG(7, 8))
	var names []string
	for l := 1; l <= 255; l += 1 + l/16 {
		b := make([]byte, l)
		for i := range b {
			c := byte(33 + rng.IntN(94))
			if rng.IntN(4) == 0 {
				c = byte(0x80 + rng.IntN(0x7f))
			}
			if c == '"' || c == '\\' {
				c = 'x'
			}
			b[i] = c
		}
		names = append(names, string(b))
	}
	names = append(names, "hello", "lost+found", "a", "0123456789abcdef", "0123456789abcdef0123456789abcdef")
	algs := map[string]uint8{
		"legacy": disklayout.DxHashLegacy, "half_md4": disklayout.DxHashHalfMD4, "tea": disklayout.DxHashTea,
		"legacy_unsigned": disklayout.DxHashLegacyU, "half_md4_unsigned": disklayout.DxHashHalfMD4U, "tea_unsigned": disklayout.DxHashTeaU,
	}
	seeds := map[string][4]uint32{
		"": {},
		// Seed bytes as a UUID are the little-endian words of s_hash_seed.
		"1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718": {0x4c3d2e1f, 0x80796a5b, 0xd4c3b2a1, 0x1807f6e5},
	}
	type query struct {
		alg, seed, name string
	}
	var qs []query
	var cmds bytes.Buffer
	for alg := range algs {
		for seed := range seeds {
			for _, n := range names {
				qs = append(qs, query{alg, seed, n})
				s := ""
				if seed != "" {
					s = "-s " + seed
				}
				// debugfs knows only the signed names; HASHALG_n takes any.
				fmt.Fprintf(&cmds, "dx_hash -h HASHALG_%d %s \"%s\"\n", algs[alg], s, n)
			}
		}
	}
	script := filepath.Join(dir, "cmds")
	if err := os.WriteFile(script, cmds.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := testimages.MustRun(t, "debugfs", "-f", script, img)
	re := regexp.MustCompile(`Hash of .* is 0x([0-9a-f]+) \(minor`)
	var got []uint32
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseUint(m[1], 16, 32)
			got = append(got, uint32(v))
		}
	}
	if len(got) != len(qs) {
		t.Fatalf("debugfs gave %d hashes for %d queries", len(got), len(qs))
	}
	bad := 0
	for i, q := range qs {
		h, ok := dirHash(algs[q.alg], []byte(q.name), seeds[q.seed])
		if !ok || h != got[i] {
			bad++
			if bad < 10 {
				t.Errorf("%s seed %q name %q (%d bytes): %#x, debugfs %#x", q.alg, q.seed, q.name, len(q.name), h, got[i])
			}
		}
	}
}

// TestCasefoldHashAgainstDebugfs checks the folding of casefolded
// directories against e2fsprogs (dx_hash -c -e utf8, the kernel's nfdicf):
// case, full foldings (ß, ligatures), precomposed and decomposed accents,
// Greek, Cyrillic, Hangul, fullwidth forms and ignorable characters.
func TestCasefoldHashAgainstDebugfs(t *testing.T) {
	testimages.RequireTools(t, "debugfs", "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if err := testimages.Truncate(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", "-O", "casefold", img)
	names := []string{"abc", "ABC", "Äbc", "a\u0308bc", "straße", "STRASSE", "Ωmega", "ﬁle", "Привет", "ЁЖИК",
		"ÉTÉ", "e\u0301te\u0301", "İstanbul", "ǅemal", "Ϊ", "ς", "Ａｂｃ", "한국어", "a\u200bb", "a\u00adb",
		"Crème Brûlée", "ÅNGSTRÖM", "Ǆ", "ŉ", "ΐ", "ﬆ", "Ꭰ", "ꭰ", "𐐀", "Å"}
	var cmds bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&cmds, "dx_hash -c -e utf8 -h half_md4 \"%s\"\n", n)
	}
	script := filepath.Join(dir, "cmds")
	if err := os.WriteFile(script, cmds.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := testimages.MustRun(t, "debugfs", "-f", script, img)
	re := regexp.MustCompile(`Hash of .* is 0x([0-9a-f]+) \(minor`)
	i := 0
	for _, line := range strings.Split(out, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if i >= len(names) {
			t.Fatal("more hashes than names")
		}
		want, _ := strconv.ParseUint(m[1], 16, 32)
		key, _ := fold([]byte(names[i]))
		got, _ := dirHash(disklayout.DxHashHalfMD4, key, [4]uint32{})
		if got != uint32(want) {
			t.Errorf("%q folds to %q: hash %#x, e2fsprogs %#x", names[i], key, got, want)
		}
		i++
	}
	if i != len(names) {
		t.Fatalf("debugfs gave %d hashes for %d names", i, len(names))
	}
}
