// Package repo is the on-disk repository of restore points: a local directory
// you can read with ls. It knows the layout, the manifest schema, point ids,
// locking, atomic publication, listing, and retention policy. It does not
// capture anything (package backup does) and never imports libvirt or FUSE.
//
// Layout:
//
//	REPO/vmmount-repository.json        marker and schema version
//	REPO/<vm>/.lock                     flock: one backup of a VM at a time
//	REPO/<vm>/latest -> <id>            symlink to the newest point
//	REPO/<vm>/<id>/manifest.json        what the point holds (Manifest)
//	REPO/<vm>/<id>/domain.xml           VM configuration (plus nvram, kernel, initrd)
//	REPO/<vm>/<id>/<target>.qcow2       one image per disk (or .raw); an
//	                                    incremental's backing file is
//	                                    ../<parent id>/<target>.qcow2
//	REPO/<vm>/<id>/<target>.blockhashes SHA-256 of every 64 KiB block of the
//	                                    disk (blockhash.go)
//	REPO/<vm>/.partial-<id>-<random>/   a point being written; never listed,
//	                                    removed by the next backup of the VM
//	REPO/<vm>/.fold-<id>.json           a merge of point <id> into the next
//	                                    one in progress (prune, forget):
//	                                    <id> is hidden; finished by the next
//	                                    prune, forget or backup (fold.go)
//
// Point ids are UTC times in ISO 8601 basic format (20261125T123456Z), so they
// sort by time and work as path components; a second point within the same
// second gets a suffix (-1, -2, ...).
//
// A point is published by writing everything into a .partial directory,
// fsyncing each file and the directory, renaming it to its id, fsyncing the
// VM directory, then replacing the latest link (symlink + rename). A backup
// killed at any moment leaves earlier points intact and no half point
// visible.
package repo
