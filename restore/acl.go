package restore

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// POSIX ACLs are xattrs system.posix_acl_access and system.posix_acl_default
// in the kernel's binary form (include/uapi/linux/posix_acl_xattr.h): a
// little-endian u32 version (2), then 8-byte entries {u16 tag, u16 perm,
// u32 id}. Tar programs store them as text in SCHILY.acl.access and
// SCHILY.acl.default (star's records, which GNU tar and libarchive read):
// "user::rw-,user:1000:r--,group::r-x,mask::r-x,other::---".

const aclXattrVersion = 2

// ACL entry tags (include/linux/posix_acl.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclText converts an ACL xattr value to its text form with numeric ids.
func aclText(b []byte) (string, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != aclXattrVersion {
		return "", fmt.Errorf("ACL xattr of %d bytes is not version %d with 8-byte entries", len(b), aclXattrVersion)
	}
	var parts []string
	for e := b[4:]; len(e) > 0; e = e[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])
		var kind, qual string
		switch tag {
		case aclUserObj:
			kind = "user"
		case aclUser:
			kind, qual = "user", strconv.FormatUint(uint64(id), 10)
		case aclGroupObj:
			kind = "group"
		case aclGroup:
			kind, qual = "group", strconv.FormatUint(uint64(id), 10)
		case aclMask:
			kind = "mask"
		case aclOther:
			kind = "other"
		default:
			return "", fmt.Errorf("ACL entry tag %#x unknown", tag)
		}
		if perm&^7 != 0 {
			return "", fmt.Errorf("ACL entry permissions %#o out of range", perm)
		}
		rwx := []byte("---")
		for i, c := range "rwx" {
			if perm&(4>>i) != 0 {
				rwx[i] = byte(c)
			}
		}
		parts = append(parts, kind+":"+qual+":"+string(rwx))
	}
	return strings.Join(parts, ","), nil
}
