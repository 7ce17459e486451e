package lvm

import (
	"fmt"
	"slices"
	"strings"
)

// Assembly is the result of putting PVs together.
type Assembly struct {
	// VGs found, in the order their first PV was given.
	VGs []*VG
	// Orphans are PVs no VG metadata claims (no metadata of their own, and
	// not listed by any VG found).
	Orphans []*PV
	// Errors are VGs whose metadata could not be used: the VG (by name) is
	// unreadable, the rest is not affected.
	Errors []error
}

// Assemble groups PVs into volume groups, as LVM's scan does: the metadata
// copies of each VG (keyed by VG UUID) are compared and the one with the
// highest seqno wins; PVs are bound to the VG's PV list by UUID. PVs that
// are missing leave their slots unbound, so only the LVs that use them
// fail.
func Assemble(pvs []*PV) *Assembly {
	out := &Assembly{}
	type group struct {
		best   *Metadata
		copies []*Metadata
	}
	groups := map[string]*group{}
	var order []string
	for _, pv := range pvs {
		md := pv.Metadata
		if md == nil {
			continue
		}
		id := plainUUID(md.VGID)
		g := groups[id]
		if g == nil {
			g = &group{}
			groups[id] = g
			order = append(order, id)
		}
		g.copies = append(g.copies, md)
		if g.best == nil || md.Seqno > g.best.Seqno {
			g.best = md
		}
	}
	byUUID := map[string]*PV{}
	dupes := map[string][]string{}
	for _, pv := range pvs {
		u := plainUUID(pv.UUID)
		if first, ok := byUUID[u]; ok {
			dupes[u] = append(dupes[u], first.Device, pv.Device)
			continue
		}
		byUUID[u] = pv
	}
	claimed := map[*PV]bool{}
	names := map[string]bool{}
	for _, id := range order {
		g := groups[id]
		vg, err := decodeVG(g.best)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Errorf("%s: %w", g.best.Source, corrupt("LVM VG "+g.best.VGName, -1, "%v", err)))
			// Its PVs are still claimed: they are not orphans.
			for _, pv := range pvs {
				if pv.Metadata != nil && plainUUID(pv.Metadata.VGID) == id {
					claimed[pv] = true
				}
			}
			continue
		}
		for _, md := range g.copies {
			if md.Seqno < g.best.Seqno {
				vg.Warnings = append(vg.Warnings, fmt.Sprintf("stale metadata (seqno %d) on %s; using seqno %d from %s", md.Seqno, md.Source, g.best.Seqno, g.best.Source))
			}
		}
		if names[vg.Name] {
			vg.Warnings = append(vg.Warnings, fmt.Sprintf("another VG is also named %s", vg.Name))
		}
		names[vg.Name] = true
		for _, slot := range vg.PVs {
			u := plainUUID(slot.UUID)
			pv := byUUID[u]
			if pv == nil {
				vg.Warnings = append(vg.Warnings, fmt.Sprintf("PV %s (%s, last seen as %s) is missing; LVs using it cannot be read", slot.Name, slot.UUID, slot.Device))
				continue
			}
			if d := dupes[u]; d != nil {
				vg.Warnings = append(vg.Warnings, fmt.Sprintf("PV %s (%s) found on several devices (%s); using %s", slot.Name, slot.UUID, strings.Join(slices.Compact(d), ", "), pv.Device))
			}
			slot.PV = pv
			claimed[pv] = true
		}
		out.VGs = append(out.VGs, vg)
	}
	for _, pv := range pvs {
		if !claimed[pv] {
			out.Orphans = append(out.Orphans, pv)
		}
	}
	return out
}
