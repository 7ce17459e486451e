// Package backup captures virtual machines into restore points of a
// repository (package repo): a libvirt domain (shut off, paused, or live
// through the libvirt backup API with the guest's filesystems frozen) or
// plain image files. Each point holds one standard qcow2 or sparse raw
// image per disk; the next point of a VM stores only the clusters that
// changed, as a qcow2 overlay on the previous point's image, found through
// libvirt checkpoints (dirty bitmaps) when the VM runs and by comparing
// per-block SHA-256 digests otherwise. It also keeps the repository tidy:
// retention (prune) with merging of incrementals so every kept point stays
// readable, forget, and verification.
//
// It does not serve or parse guest filesystems (fsread, mount do) and never
// prints: progress goes through internal/progress, warnings and timings
// come back in the Result.
//
// Every path out of a capture, including errors, a lost libvirtd and a
// cancelled context, resumes a VM it paused, thaws filesystems it froze,
// ends the backup job it began and removes the partial point: each undo is
// registered before the state change it undoes and run with a fresh
// context (undo.go).
package backup
