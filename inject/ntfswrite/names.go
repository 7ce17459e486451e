package ntfswrite

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxNameUnits is the longest name a $FILE_NAME holds, in UTF-16 units.
const maxNameUnits = 255

// checkName refuses names Windows cannot use, as ntfs-3g's windows_names
// option does (unistr.c ntfs_forbidden_chars, ntfs_forbidden_names):
// control characters and " * / : < > ? \ |, a trailing space or dot, the
// DOS device names (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with or without an
// extension), and names that are not UTF-8 or longer than 255 UTF-16
// units. It returns the name as UTF-16.
func checkName(name string) ([]uint16, error) {
	switch {
	case name == "" || name == "." || name == "..":
		return nil, fmt.Errorf("name %q: %w", name, ErrRefused)
	case !utf8.ValidString(name):
		return nil, fmt.Errorf("name %q is not valid UTF-8: %w", name, ErrRefused)
	}
	u := utf16Units(name)
	if len(u) > maxNameUnits {
		return nil, fmt.Errorf("name %.40q...: longer than %d UTF-16 units: %w", name, maxNameUnits, ErrRefused)
	}
	for _, c := range u {
		if c < 0x20 || strings.ContainsRune(`"*/:<>?\|`, rune(c)) {
			return nil, fmt.Errorf("name %q holds %q, which Windows does not allow in names: %w", name, rune(c), ErrRefused)
		}
	}
	if last := name[len(name)-1]; last == ' ' || last == '.' {
		return nil, fmt.Errorf("name %q ends with %q, which Windows strips: %w", name, last, ErrRefused)
	}
	base := strings.ToUpper(name)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	switch {
	case base == "CON" || base == "PRN" || base == "AUX" || base == "NUL",
		len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) && base[3] >= '1' && base[3] <= '9':
		return nil, fmt.Errorf("name %q is a DOS device name, which Windows opens as the device: %w", name, ErrRefused)
	}
	return u, nil
}

// dosChars are the characters of 8.3 names besides A-Z and 0-9.
const dosChars = "$%'-_@~`!(){}^#&"

// isDOSName says whether a name is already a valid DOS 8.3 name: one to
// eight characters, optionally a dot and one to three more, upper case
// letters, digits and the DOS punctuation only. Windows stores such a
// name once, in the Win32 & DOS namespace, instead of a long name and a
// short one.
func isDOSName(name string) bool {
	base, ext, dot := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || dot && (ext == "" || len(ext) > 3) {
		return false
	}
	for _, s := range []string{base, ext} {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(dosChars, c) >= 0) {
				return false
			}
		}
	}
	return true
}

// namespaceFor is the $FILE_NAME namespace of a new name: Win32 & DOS for
// a name that is a valid 8.3 name as it is (as Windows stores it), else
// POSIX, as ntfs-3g creates every name. No separate DOS (8.3) name is
// generated: Windows does not need one (it creates none when 8.3
// generation is off, the default on data volumes since Windows 8), and
// generating one safely needs the whole directory's short names.
func namespaceFor(name string) uint8 {
	if isDOSName(name) {
		return nsWin32AndDOS
	}
	return nsPOSIX
}
