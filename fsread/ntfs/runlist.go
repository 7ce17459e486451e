package ntfs

import (
	"fmt"
)

// run maps clusters [vcn, vcn+n) of a stream to clusters [lcn, lcn+n) of
// the volume; lcn is -1 for a hole (sparse run).
type run struct {
	vcn, lcn, n int64
}

// decodeRuns decodes an attribute extent's mapping pairs (ntfs-3g
// runlist.c, ntfs_mapping_pairs_decompress): each pair is a header byte
// whose low nibble is the size of the run length and high nibble the size
// of the signed LCN delta; a delta size of 0 is a hole; a 0 byte ends the
// list. The runs must cover exactly VCNs lowVCN..highVCN and lie inside
// the volume's clusters.
func decodeRuns(b []byte, lowVCN, highVCN, clusters int64) ([]run, error) {
	var runs []run
	vcn, lcn := lowVCN, int64(0)
	for pos := 0; ; {
		if pos >= len(b) {
			return nil, fmt.Errorf("mapping pairs have no terminator")
		}
		h := b[pos]
		if h == 0 {
			break
		}
		ls, os := int(h&0x0F), int(h>>4)
		pos++
		if ls == 0 || ls > 8 || os > 8 || pos+ls+os > len(b) {
			return nil, fmt.Errorf("mapping pair header %#02x at %d is invalid", h, pos-1)
		}
		var n int64
		for i := ls - 1; i >= 0; i-- {
			n = n<<8 | int64(b[pos+i])
		}
		if n <= 0 {
			return nil, fmt.Errorf("run of %d clusters at VCN %d", n, vcn)
		}
		pos += ls
		r := run{vcn: vcn, lcn: -1, n: n}
		if os > 0 {
			d := int64(int8(b[pos+os-1])) // sign-extends the top byte
			for i := os - 2; i >= 0; i-- {
				d = d<<8 | int64(b[pos+i])
			}
			lcn += d
			if lcn < 0 || n > clusters || lcn > clusters-n {
				return nil, fmt.Errorf("run of %d clusters at LCN %d is outside the volume's %d clusters", n, lcn, clusters)
			}
			r.lcn = lcn
		}
		pos += os
		if n > highVCN-vcn+1 {
			return nil, fmt.Errorf("runs reach VCN %d past the extent's last VCN %d", vcn+n-1, highVCN)
		}
		runs = append(runs, r)
		vcn += n
	}
	if vcn != highVCN+1 {
		return nil, fmt.Errorf("runs end at VCN %d, the extent at %d", vcn-1, highVCN)
	}
	return runs, nil
}
