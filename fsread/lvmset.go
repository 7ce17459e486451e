package fsread

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vmmount/vmmount/fsread/lvm"
)

// maxLVVolumes bounds the LVs a set lists (each is probed when the set
// opens); real VGs have tens, hostile metadata could declare hundreds of
// thousands.
const maxLVVolumes = 4096

// assembleLVM puts the PVs found on the disks' volumes into VGs and adds a
// volume for every visible LV. LVs that cannot be read (missing PV, a
// snapshot or thin volume) are listed with the reason.
func (s *Set) assembleLVM(ctx context.Context, pvs []*lvm.PV, pvVolume map[*lvm.PV]*Volume, opts Options) error {
	if len(pvs) == 0 {
		return nil
	}
	as := lvm.Assemble(pvs)
	s.errs = append(s.errs, as.Errors...)
	taken := map[string]bool{}
	if len(s.disks) > 1 {
		for _, d := range s.disks {
			taken[d.Name] = true
		}
	} else {
		for _, v := range s.disks[0].Volumes {
			taken[v.Name] = true
		}
	}
	inVG := map[*lvm.PV]*lvm.VG{}
	for _, vg := range as.VGs {
		s.vgs = append(s.vgs, vg)
		for _, w := range vg.Warnings {
			s.warnings = append(s.warnings, "VG "+vg.Name+": "+w)
		}
		var lvPaths []string
		for _, lv := range vg.LVs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !lv.Visible {
				continue
			}
			if len(s.lvVolumes) >= maxLVVolumes {
				s.warnings = append(s.warnings, fmt.Sprintf("VG %s: more than %d logical volumes; the rest are not listed", vg.Name, maxLVVolumes))
				break
			}
			name := lv.MapperName()
			if taken[name] {
				n := 2
				for taken[fmt.Sprintf("%s_%d", name, n)] {
					n++
				}
				alt := fmt.Sprintf("%s_%d", name, n)
				s.warnings = append(s.warnings, fmt.Sprintf("LV %s/%s is named %s: %s is taken", vg.Name, lv.Name, alt, name))
				name = alt
			}
			taken[name] = true
			v := &Volume{Name: name, Path: "/" + name, Kind: KindLV, Size: lv.Size(),
				LV: &LVInfo{VG: vg.Name, LV: lv.Name, VGUUID: vg.ID, UUID: lv.UUID, Type: lv.Type(), PVs: lvPVPaths(vg, lv, pvVolume)}}
			r, err := lv.Open()
			if err != nil {
				v.FSType = TypeUnknown
				v.reason = fmt.Errorf("%s: %w", v.Path, err)
			} else {
				v.r = r
				s.probe(v, opts)
			}
			s.lvVolumes = append(s.lvVolumes, v)
			lvPaths = append(lvPaths, v.Path)
		}
		for _, slot := range vg.PVs {
			if slot.PV != nil {
				inVG[slot.PV] = vg
				if pv := pvVolume[slot.PV]; pv != nil {
					pv.PV.VG = vg.Name
					pv.PV.LVs = lvPaths
				}
			}
		}
	}
	orphan := map[*lvm.PV]bool{}
	for _, pv := range as.Orphans {
		orphan[pv] = true
	}
	for pv, v := range pvVolume {
		switch {
		case inVG[pv] != nil:
			lvs := "none"
			if len(v.PV.LVs) > 0 {
				lvs = strings.Join(v.PV.LVs, " ")
			}
			v.reason = notReadable(v.Path, "LVM physical volume of VG %s; its logical volumes: %s", inVG[pv].Name, lvs)
		case orphan[pv]:
			v.reason = notReadable(v.Path, "LVM physical volume in no volume group found")
		default:
			vgName := ""
			if pv.Metadata != nil {
				vgName = pv.Metadata.VGName
			}
			v.PV.VG = vgName
			v.reason = notReadable(v.Path, "LVM physical volume of VG %s, whose metadata is unusable", vgName)
		}
	}
	return nil
}

// lvPVPaths lists the volumes holding the PVs an LV uses, through its
// sub-LVs.
func lvPVPaths(vg *lvm.VG, lv *lvm.LV, pvVolume map[*lvm.PV]*Volume) []string {
	var out []string
	seen := map[*lvm.LV]bool{}
	var walk func(*lvm.LV)
	walk = func(lv *lvm.LV) {
		if lv == nil || seen[lv] {
			return
		}
		seen[lv] = true
		for _, sg := range lv.Segments {
			for _, a := range sg.Areas {
				switch {
				case a.PV != nil:
					p := "(missing " + a.PV.UUID + ")"
					if a.PV.PV != nil && pvVolume[a.PV.PV] != nil {
						p = pvVolume[a.PV.PV].Path
					}
					if !slices.Contains(out, p) {
						out = append(out, p)
					}
				case a.LV != "":
					walk(vg.LV(a.LV))
				}
			}
		}
	}
	walk(lv)
	return out
}
