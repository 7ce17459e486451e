package ntfswrite

// Security of new files and directories.
//
// On volumes Windows formatted, every file's $STANDARD_INFORMATION (NTFS
// 3.x, 72 bytes) names a security descriptor kept once in $Secure by
// its security_id. A new file gets the security_id of its directory: it
// is then accessible exactly as its directory is. Windows would store an
// inherited descriptor instead (the directory's inheritable entries,
// marked inherited), which can differ from the directory's own when the
// directory has "this folder only" or "files only" entries; computing and
// registering one in $Secure is not implemented.
//
// Directories without a security_id (made by mkntfs or ntfs-3g, whose
// $STANDARD_INFORMATION is the 48-byte NTFS 1.2 form) keep their
// descriptor in their own $SECURITY_DESCRIPTOR attribute. A new file
// gets a copy of its directory's when it is resident and small, else,
// as ntfs-3g does without a user mapping (security.c
// ntfs_sd_add_everyone), one granting everyone full access, owned by
// Administrators.

// maxCopiedSD bounds the descriptor copied from a directory into a new
// record.
const maxCopiedSD = 256

// everyoneSD is ntfs-3g's default descriptor: owner and group
// S-1-5-32-544 (Administrators), a DACL allowing S-1-1-0 (Everyone)
// 0x1F01FF (full control), inherited by files and directories.
var everyoneSD = []byte{
	1, 0, 0x04, 0x80, // revision 1, control SE_DACL_PRESENT|SE_SELF_RELATIVE
	20, 0, 0, 0, // owner at 20
	36, 0, 0, 0, // group at 36
	0, 0, 0, 0, // no SACL
	52, 0, 0, 0, // DACL at 52
	1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0, // S-1-5-32-544
	1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0, // S-1-5-32-544
	2, 0, 28, 0, 1, 0, 0, 0, // ACL revision 2, 28 bytes, 1 ACE
	0, 3, 20, 0, 0xFF, 0x01, 0x1F, 0x00, // ACCESS_ALLOWED, OI|CI, 0x1F01FF
	1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, // S-1-1-0
}

// security says how a new file in directory dir is protected: the
// security_id for a 72-byte $STANDARD_INFORMATION, or (id 0) the
// descriptor for its own $SECURITY_DESCRIPTOR.
func (f *FS) security(dir *mrec) (id uint32, sd []byte, err error) {
	si, err := f.stdInfo(dir)
	if err != nil {
		return 0, nil, err
	}
	if len(si.value) >= siSizeV3 {
		if id := le.Uint32(si.value[siSecurityID:]); id != 0 {
			return id, nil, nil
		}
	}
	if a := dir.find(atSecurityDescriptor, nil); a != nil && a.resident && len(a.value) >= 20 && len(a.value) <= maxCopiedSD {
		return 0, append([]byte(nil), a.value...), nil
	}
	return 0, append([]byte(nil), everyoneSD...), nil
}
