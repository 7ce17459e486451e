package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// escapeName makes a guest file name safe to print on a terminal, as
// `ls -b` does: backslash, control characters and bytes that are not UTF-8
// become C escapes (\\, \n, \t, \ooo). Other names print as they are.
func escapeName(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\%03o", s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			for k := 0; k < n; k++ {
				fmt.Fprintf(&b, "\\%03o", s[i+k])
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
