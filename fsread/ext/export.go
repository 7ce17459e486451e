package ext

// Exports for package inject/extwrite, which writes into ext filesystems and
// must hash names exactly as this reader (and the kernel) do.

// DirHash returns the major htree hash of name for hash version v (one of
// disklayout.DxHash*, with the unsigned variants already chosen) and the
// superblock's s_hash_seed. ok is false for a version it does not compute
// (siphash, unknown).
func DirHash(v uint8, name []byte, seed [4]uint32) (hash uint32, ok bool) {
	return dirHash(v, name, seed)
}
