package ntfswrite

// upcase is the volume's $UpCase table: the upper case of each UTF-16
// unit, as Windows compares names. Units past its end are their own
// upper case (ntfs-3g unistr.c).
type upcase []uint16

func (t upcase) of(c uint16) uint16 {
	if int(c) < len(t) {
		return t[c]
	}
	return c
}

// collateNames orders two names as a $I30 index does (COLLATION_FILE_NAME,
// ntfs-3g unistr.c ntfs_names_full_collate with CASE_SENSITIVE): by upper
// case, a shorter name first when one is a prefix of the other, and names
// equal ignoring case by their units as they are.
func (t upcase) collateNames(a, b []uint16) int {
	if c := t.collateIgnoreCase(a, b); c != 0 {
		return c
	}
	return compareUnits(a, b)
}

// collateIgnoreCase orders names by upper case only (IGNORE_CASE): 0 means
// Windows sees the same name.
func (t upcase) collateIgnoreCase(a, b []uint16) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ua, ub := t.of(a[i]), t.of(b[i])
		if ua != ub {
			if ua < ub {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// sign reduces a comparison to -1, 0, 1.
func sign(c int) int {
	switch {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}
