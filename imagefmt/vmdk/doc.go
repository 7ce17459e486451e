// Package vmdk reads VMware virtual disks as VMware's "Virtual Disk Format
// 1.1" describes them, and as qemu reads them: hosted sparse extents
// (monolithicSparse, the KDMV header with grain directory and tables,
// zeroed-grain entries), streamOptimized extents (deflate-compressed grains
// with markers and the footer copy of the header that VMware and OVA exports
// write), text descriptors with FLAT, SPARSE, ZERO, VMFS and VMFSSPARSE
// extents (monolithicFlat, twoGbMaxExtentSparse/Flat, vmfs), COWD sparse
// extents (vmfsSparse), and delta disks whose parentFileNameHint names the
// parent.
//
// It is read-only. Variants it does not read are refused by name: SE sparse
// (SESPARSE), raw device mappings (VMFSRDM, VMFSRAW), NOACCESS extents.
// Extent files must sit in or under the descriptor's directory: a
// descriptor cannot make vmmount read an arbitrary host file.
package vmdk
