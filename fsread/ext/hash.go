package ext

import (
	"math/bits"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Directory index hashes (directory.rst, "Hash Tree Directories"; the
// algorithms as e2fsprogs lib/ext2fs/dirhash.c and fs/ext4/hash.c define
// them). Each comes in a signed-char and an unsigned-char variant: the
// bytes of a name are sign-extended or not before mixing, which differs
// for names with bytes >= 0x80. The superblock's unsigned-hash flag picks
// the variant for legacy, half_md4 and tea.

// dirHash returns the major hash of name for hash version v; ok is false
// for a version this reader does not compute (siphash, unknown).
func dirHash(v uint8, name []byte, seed [4]uint32) (uint32, bool) {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var h uint32
	switch v {
	case disklayout.DxHashLegacy, disklayout.DxHashLegacyU:
		h = dxHackHash(name, v == disklayout.DxHashLegacyU)
	case disklayout.DxHashHalfMD4, disklayout.DxHashHalfMD4U:
		var in [8]uint32
		for p := name; ; p = p[32:] {
			str2hashbuf(p, in[:], v == disklayout.DxHashHalfMD4U)
			halfMD4Transform(&buf, &in)
			if len(p) <= 32 {
				break
			}
		}
		h = buf[1]
	case disklayout.DxHashTea, disklayout.DxHashTeaU:
		var in [8]uint32
		for p := name; ; p = p[16:] {
			str2hashbuf(p, in[:4], v == disklayout.DxHashTeaU)
			teaTransform(&buf, &in)
			if len(p) <= 16 {
				break
			}
		}
		h = buf[0]
	default:
		return 0, false
	}
	h &^= 1
	// The kernel keeps the 32-bit end-of-directory cookie free.
	if h == 0x7fffffff<<1 {
		h = (0x7fffffff - 1) << 1
	}
	return h, true
}

// char widens a name byte as C would for a signed or unsigned char.
func char(c byte, unsigned bool) uint32 {
	if unsigned {
		return uint32(c)
	}
	return uint32(int32(int8(c)))
}

func dxHackHash(name []byte, unsigned bool) uint32 {
	hash0, hash1 := uint32(0x12a3fe2d), uint32(0x37abe8f9)
	for _, c := range name {
		hash := hash1 + (hash0 ^ char(c, unsigned)*7152373)
		if hash&0x80000000 != 0 {
			hash -= 0x7fffffff
		}
		hash1, hash0 = hash0, hash
	}
	return hash0 << 1
}

// str2hashbuf packs up to 4*len(buf) bytes of msg into words, padding with
// a pattern made of the length.
func str2hashbuf(msg []byte, buf []uint32, unsigned bool) {
	l := uint32(len(msg))
	pad := l | l<<8
	pad |= pad << 16
	val := pad
	n := len(buf)
	if len(msg) > n*4 {
		msg = msg[:n*4]
	}
	j := 0
	for i, c := range msg {
		val = char(c, unsigned) + val<<8
		if i%4 == 3 {
			buf[j] = val
			j++
			val = pad
		}
	}
	if j < n {
		buf[j] = val
		j++
	}
	for ; j < n; j++ {
		buf[j] = pad
	}
}

func teaTransform(buf *[4]uint32, in *[8]uint32) {
	const delta = 0x9E3779B9
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for range 16 {
		sum += delta
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}

// halfMD4Transform is MD4 cut down to three rounds of eight steps.
func halfMD4Transform(buf *[4]uint32, in *[8]uint32) {
	const k2, k3 = 0x5A827999, 0x6ED9EBA1
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	r := func(fn func(x, y, z uint32) uint32, a, b, c, d, x uint32, s int) uint32 {
		return bits.RotateLeft32(a+fn(b, c, d)+x, s)
	}
	// Round 1.
	a = r(f, a, b, c, d, in[0], 3)
	d = r(f, d, a, b, c, in[1], 7)
	c = r(f, c, d, a, b, in[2], 11)
	b = r(f, b, c, d, a, in[3], 19)
	a = r(f, a, b, c, d, in[4], 3)
	d = r(f, d, a, b, c, in[5], 7)
	c = r(f, c, d, a, b, in[6], 11)
	b = r(f, b, c, d, a, in[7], 19)
	// Round 2.
	a = r(g, a, b, c, d, in[1]+k2, 3)
	d = r(g, d, a, b, c, in[3]+k2, 5)
	c = r(g, c, d, a, b, in[5]+k2, 9)
	b = r(g, b, c, d, a, in[7]+k2, 13)
	a = r(g, a, b, c, d, in[0]+k2, 3)
	d = r(g, d, a, b, c, in[2]+k2, 5)
	c = r(g, c, d, a, b, in[4]+k2, 9)
	b = r(g, b, c, d, a, in[6]+k2, 13)
	// Round 3.
	a = r(h, a, b, c, d, in[3]+k3, 3)
	d = r(h, d, a, b, c, in[7]+k3, 9)
	c = r(h, c, d, a, b, in[2]+k3, 11)
	b = r(h, b, c, d, a, in[6]+k3, 15)
	a = r(h, a, b, c, d, in[1]+k3, 3)
	d = r(h, d, a, b, c, in[5]+k3, 9)
	c = r(h, c, d, a, b, in[0]+k3, 11)
	b = r(h, b, c, d, a, in[4]+k3, 15)
	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}
