// Package lvm reads LVM2 physical volumes and the logical volumes laid out
// on them, in user space and read-only: the PV label (LABELONE) and header,
// the metadata area headers and their circular text buffers, the LVM2 text
// metadata format, and the mapping of logical extents to physical extents.
//
// A VG may span several disks of one VM: Assemble matches PVs by UUID,
// takes the metadata with the highest seqno, and opens every LV it can; an
// LV whose PV is missing fails alone. Linear and striped LVs are read
// directly; raid1 and mirror LVs are read from one healthy leg (a leg whose
// PVs are all present and which is not being rebuilt); raid0 is read as the
// striped set it is. Snapshots, thin pools and volumes, cache, writecache,
// VDO, integrity and raid4/5/6/10 are listed and refused by name.
//
// It is not an LVM implementation: it never writes, does not repair or
// merge diverging metadata beyond choosing the newest copy, and ignores
// lvmlockd, the devices file and lvm.conf filters. The layout follows LVM2's
// lib/format_text (layout.h, format-text.c, import_vsn1.c) and
// lib/label/label.h; the metadata grammar is libdm's config format.
package lvm
