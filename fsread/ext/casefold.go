package ext

import (
	"sort"
	"unicode/utf8"
)

// Casefolded directories (the casefold feature with a directory's
// EXT4_CASEFOLD_FL) compare and hash names after the kernel's utf8
// "nfdicf" folding (fs/unicode/utf8-norm.c): full case folding, canonical
// decomposition (NFD), default-ignorable code points dropped. A name that
// is not valid UTF-8 is taken as raw bytes (in strict mode the kernel never
// stores one).
//
// casefold_table.go holds the per-code-point mapping (generated from the
// Unicode data by internal/casefoldgen); Hangul syllables decompose
// arithmetically. Not done: the canonical reordering of runs of several
// combining marks, which only names with stacked diacritics in unusual
// order need. Lookups stay correct for those too: a name whose hash misses
// in an htree directory is looked up again in the directory's folded name
// index.

// fold returns the casefolded form of name, or name itself when it is not
// valid UTF-8.
func fold(name []byte) ([]byte, bool) {
	if isASCII(name) {
		out := make([]byte, len(name))
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out[i] = c
		}
		return out, true
	}
	if !utf8.Valid(name) {
		return name, false
	}
	out := make([]byte, 0, len(name)+8)
	for _, r := range string(name) {
		out = appendFolded(out, r)
	}
	return out, true
}

// appendFolded appends the nfdicf form of one rune.
func appendFolded(out []byte, r rune) []byte {
	const sBase, lBase, vBase, tBase, tCount, nCount, sCount = 0xAC00, 0x1100, 0x1161, 0x11A7, 28, 588, 11172
	if s := r - sBase; s >= 0 && s < sCount {
		out = utf8.AppendRune(out, lBase+s/nCount)
		out = utf8.AppendRune(out, vBase+(s%nCount)/tCount)
		if t := s % tCount; t != 0 {
			out = utf8.AppendRune(out, tBase+t)
		}
		return out
	}
	i := sort.Search(len(cfKeys), func(i int) bool { return cfKeys[i] >= r })
	if i < len(cfKeys) && cfKeys[i] == r {
		return append(out, cfVals[cfIdx[i]:cfIdx[i+1]]...)
	}
	return utf8.AppendRune(out, r)
}

// isASCII says whether name is plain ASCII (folding is then exact and
// cheap).
func isASCII(name []byte) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
