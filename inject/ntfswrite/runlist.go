package ntfswrite

import (
	"fmt"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// run maps clusters [vcn, vcn+n) of an attribute to [lcn, lcn+n); lcn -1
// is a hole.
type run = ntfs.Run

// sigBytes is the number of bytes v needs as a signed little-endian
// integer (ntfs-3g runlist.c, ntfs_get_nr_significant_bytes).
func sigBytes(v int64) int {
	n := 0
	for {
		n++
		b := int8(v)
		v >>= 8
		if (v == 0 && b >= 0) || (v == -1 && b < 0) {
			return n
		}
	}
}

// encodeRuns builds the mapping pairs of runs (which start at VCN
// lowVCN and are contiguous): per run a header byte (low nibble: bytes of
// the length, high nibble: bytes of the LCN delta, 0 for a hole), the
// length, the delta from the previous run's LCN; a 0 byte ends the list.
func encodeRuns(runs []run, lowVCN int64) ([]byte, error) {
	var out []byte
	vcn, prev := lowVCN, int64(0)
	for _, r := range runs {
		if r.VCN != vcn || r.N <= 0 {
			return nil, fmt.Errorf("run list is not contiguous at VCN %d", vcn)
		}
		ls := sigBytes(r.N)
		hdr := len(out)
		out = append(out, 0)
		for i := 0; i < ls; i++ {
			out = append(out, byte(r.N>>(8*i)))
		}
		os := 0
		if r.LCN >= 0 {
			d := r.LCN - prev
			os = sigBytes(d)
			for i := 0; i < os; i++ {
				out = append(out, byte(d>>(8*i)))
			}
			prev = r.LCN
		}
		out[hdr] = byte(os<<4 | ls)
		vcn += r.N
	}
	return append(out, 0), nil
}

// appendRun adds clusters [lcn, lcn+n) at the end of runs, merged with
// the last run when contiguous.
func appendRun(runs []run, lcn, n int64) []run {
	vcn := int64(0)
	if k := len(runs); k > 0 {
		last := &runs[k-1]
		vcn = last.VCN + last.N
		if last.LCN >= 0 && last.LCN+last.N == lcn {
			last.N += n
			return runs
		}
	}
	return append(runs, run{VCN: vcn, LCN: lcn, N: n})
}

// runsClusters counts the clusters runs cover (holes included).
func runsClusters(runs []run) int64 {
	if len(runs) == 0 {
		return 0
	}
	l := runs[len(runs)-1]
	return l.VCN + l.N - runs[0].VCN
}

// lcnOf maps a VCN to its LCN and the clusters left in its run; lcn is
// -1 in a hole and ok false past the runs.
func lcnOf(runs []run, vcn int64) (lcn, left int64, ok bool) {
	lo, hi := 0, len(runs)
	for lo < hi {
		m := (lo + hi) / 2
		if runs[m].VCN+runs[m].N <= vcn {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(runs) || runs[lo].VCN > vcn {
		return 0, 0, false
	}
	r := runs[lo]
	if r.LCN < 0 {
		return -1, r.VCN + r.N - vcn, true
	}
	return r.LCN + vcn - r.VCN, r.VCN + r.N - vcn, true
}
