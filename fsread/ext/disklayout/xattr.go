package disklayout

import "encoding/binary"

// Extended attributes (Documentation/filesystems/ext4/attributes.rst). They
// live after i_extra_isize in the inode body (a 4-byte magic, then entries
// whose value offsets count from the first entry) and in one block named by
// i_file_acl (a 32-byte header, then entries whose value offsets count from
// the block start). A list ends at four zero bytes.
const (
	XattrMagic          = 0xEA020000
	XattrHeaderSize     = 32
	XattrIbodyHdrSize   = 4
	XattrEntrySize      = 16 // without the name
	xattrBlockCsumOff   = 0x10
	XattrIndexUser      = 1
	XattrIndexACLAccess = 2
	XattrIndexACLDflt   = 3
	XattrIndexTrusted   = 4
	XattrIndexLustre    = 5
	XattrIndexSecurity  = 6
	XattrIndexSystem    = 7
	XattrIndexRichACL   = 8
	XattrIndexEncrypt   = 9
	XattrIndexHurd      = 10
)

// XattrHeader is struct ext4_xattr_header (block form).
type XattrHeader struct {
	Magic    uint32
	Refcount uint32
	Blocks   uint32
	Hash     uint32
	Checksum uint32
	Reserved [3]uint32
}

// XattrEntry is struct ext4_xattr_entry without the name that follows.
type XattrEntry struct {
	NameLen   uint8
	NameIndex uint8
	ValueOffs uint16
	ValueInum uint32 // ea_inode: the inode holding the value, else 0
	ValueSize uint32
	Hash      uint32
}

// DecodeXattrHeader decodes a block header.
func DecodeXattrHeader(b []byte) (XattrHeader, error) {
	var h XattrHeader
	if len(b) < XattrHeaderSize {
		return h, errShort
	}
	le := binary.LittleEndian
	h.Magic = le.Uint32(b[0:])
	h.Refcount = le.Uint32(b[4:])
	h.Blocks = le.Uint32(b[8:])
	h.Hash = le.Uint32(b[12:])
	h.Checksum = le.Uint32(b[16:])
	for i := range h.Reserved {
		h.Reserved[i] = le.Uint32(b[20+4*i:])
	}
	return h, nil
}

// DecodeXattrEntry decodes an entry header at b[0:16].
func DecodeXattrEntry(b []byte) (XattrEntry, error) {
	if len(b) < XattrEntrySize {
		return XattrEntry{}, errShort
	}
	le := binary.LittleEndian
	return XattrEntry{NameLen: b[0], NameIndex: b[1], ValueOffs: le.Uint16(b[2:]), ValueInum: le.Uint32(b[4:]), ValueSize: le.Uint32(b[8:]), Hash: le.Uint32(b[12:])}, nil
}

// XattrEntryLen is EXT4_XATTR_LEN: header plus name, rounded to 4.
func XattrEntryLen(nameLen int) int { return (XattrEntrySize + nameLen + 3) &^ 3 }

// XattrBlockChecksum is crc32c(fs seed, le64 block number, block with
// h_checksum as zeros).
func XattrBlockChecksum(seed uint32, blk uint64, b []byte) uint32 {
	c := Crc32cU64(seed, blk)
	c = Crc32c(c, b[:xattrBlockCsumOff])
	c = Crc32cZeros(c, 4)
	return Crc32c(c, b[xattrBlockCsumOff+4:])
}

// ACLs in xattrs. ext4 stores system.posix_acl_* in its own compact form
// (version 1, 4-byte entries for the owner/group/mask/other tags and
// 8-byte ones for named users and groups); the kernel hands them to
// getxattr in the generic posix_acl_xattr form (version 2, all entries
// 8 bytes, e_id -1 where unused). See fs/ext4/acl.h and
// include/uapi/linux/posix_acl_xattr.h.
const (
	ExtACLVersion    = 1
	PosixACLVersion  = 2
	ACLUserObj       = 0x01
	ACLUser          = 0x02
	ACLGroupObj      = 0x04
	ACLGroup         = 0x08
	ACLMask          = 0x10
	ACLOther         = 0x20
	ACLUndefinedID   = 0xFFFFFFFF
	extACLHeaderSize = 4
)

// ConvertACL turns an ext4 ACL value into posix_acl_xattr bytes. ok is
// false when the value is malformed.
func ConvertACL(v []byte) (out []byte, ok bool) {
	le := binary.LittleEndian
	if len(v) < extACLHeaderSize || le.Uint32(v) != ExtACLVersion {
		return nil, false
	}
	out = make([]byte, 4, 4+2*len(v))
	le.PutUint32(out, PosixACLVersion)
	for p := v[extACLHeaderSize:]; len(p) > 0; {
		if len(p) < 4 {
			return nil, false
		}
		tag, perm := le.Uint16(p), le.Uint16(p[2:])
		id := uint32(ACLUndefinedID)
		switch tag {
		case ACLUserObj, ACLGroupObj, ACLMask, ACLOther:
			p = p[4:]
		case ACLUser, ACLGroup:
			if len(p) < 8 {
				return nil, false
			}
			id = le.Uint32(p[4:])
			p = p[8:]
		default:
			return nil, false
		}
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, perm)
		out = le.AppendUint32(out, id)
	}
	return out, true
}
