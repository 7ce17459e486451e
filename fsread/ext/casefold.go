package ext

import (
	"unicode"
	"unicode/utf8"
)

// Casefolded directories (the casefold feature with a directory's
// EXT4_CASEFOLD_FL) compare and hash names after the kernel's utf8
// casefolding: Unicode normalization to NFD, then full case folding
// (fs/unicode, utf8_casefold). A name that is not valid UTF-8 is taken as
// raw bytes (in strict mode the kernel never stores one).
//
// This reader folds case per rune (simple folding to the lower case of the
// upper case, plus the few full foldings that expand, like ß to ss) but does
// not normalize: that is exact for ASCII and for names already in NFD, which
// covers what people type on Linux. For a name whose folded hash misses in
// an htree directory, Lookup falls back to a linear scan comparing folded
// names, so case-insensitive lookups still work; only names that differ in
// normalization alone (precomposed vs. combining accents) are not matched.

// fold returns the casefolded form of name, or name itself when it is not
// valid UTF-8.
func fold(name []byte) ([]byte, bool) {
	ascii := true
	for _, c := range name {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
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
		switch r {
		case 'ß', 'ẞ':
			out = append(out, "ss"...)
			continue
		case 'İ':
			out = append(out, "i\u0307"...)
			continue
		}
		out = utf8.AppendRune(out, unicode.ToLower(unicode.ToUpper(r)))
	}
	return out, true
}

// isASCII says whether folding name is exact (see above).
func isASCII(name []byte) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
