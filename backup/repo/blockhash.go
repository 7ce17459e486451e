package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
)

// Block hashes: one SHA-256 per HashBlockSize block of a disk's guest view,
// stored beside each image. They make incrementals by comparison possible
// (only blocks whose digest changed are stored), and let a restore check
// every block it writes. The digest of the list identifies the content.
//
// File layout (little-endian):
//
//	0  magic "VMMBHASH"
//	8  version u32 (1)
//	12 block size u32
//	16 disk size u64
//	24 block count u64
//	32 reserved, zero, to 64
//	64 count × 32-byte SHA-256 digests
const (
	HashBlockSize   = 64 << 10
	hashHeaderSize  = 64
	hashMagic       = "VMMBHASH"
	hashVersion     = 1
	maxHashFileSize = 1 << 34 // 16 GiB of digests: a 32 PiB disk at 64 KiB
)

// BlockHashes are the digests of a disk's blocks.
type BlockHashes struct {
	BlockSize int64
	Size      int64
	Sums      [][sha256.Size]byte
}

// NewBlockHashes makes an empty list for a disk of size bytes.
func NewBlockHashes(size, blockSize int64) *BlockHashes {
	n := (size + blockSize - 1) / blockSize
	return &BlockHashes{BlockSize: blockSize, Size: size, Sums: make([][sha256.Size]byte, n)}
}

// ZeroSum returns the digest of an all-zero block of the given length.
func ZeroSum(n int64) [sha256.Size]byte {
	h := sha256.New()
	var zero [64 << 10]byte
	for n > 0 {
		k := min(n, int64(len(zero)))
		h.Write(zero[:k])
		n -= k
	}
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}

// BlockLen is the length of block i (the last one may be short).
func (h *BlockHashes) BlockLen(i int) int64 {
	return min(h.BlockSize, h.Size-int64(i)*h.BlockSize)
}

// Digest is the SHA-256 of the encoded list: the identity of the content.
func (h *BlockHashes) Digest() string {
	s := sha256.Sum256(h.encode())
	return hex.EncodeToString(s[:])
}

func (h *BlockHashes) encode() []byte {
	b := make([]byte, hashHeaderSize+len(h.Sums)*sha256.Size)
	copy(b, hashMagic)
	binary.LittleEndian.PutUint32(b[8:], hashVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(h.BlockSize))
	binary.LittleEndian.PutUint64(b[16:], uint64(h.Size))
	binary.LittleEndian.PutUint64(b[24:], uint64(len(h.Sums)))
	for i, s := range h.Sums {
		copy(b[hashHeaderSize+i*sha256.Size:], s[:])
	}
	return b
}

// Write stores the list durably.
func (h *BlockHashes) Write(path string) error {
	return writeFileSync(path, h.encode(), 0o644)
}

// ReadBlockHashes reads a list, checking its header against its length.
func ReadBlockHashes(path string) (*BlockHashes, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxHashFileSize {
		return nil, fmt.Errorf("%s: %w: block hash file of %d bytes", path, ErrCorrupt, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h, err := decodeBlockHashes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

func decodeBlockHashes(b []byte) (*BlockHashes, error) {
	if len(b) < hashHeaderSize || !bytes.Equal(b[:8], []byte(hashMagic)) {
		return nil, fmt.Errorf("%w: not a block hash file", ErrCorrupt)
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != hashVersion {
		return nil, fmt.Errorf("%w: block hash version %d", ErrCorrupt, v)
	}
	bs := int64(le.Uint32(b[12:]))
	size := le.Uint64(b[16:])
	count := le.Uint64(b[24:])
	if bs < 512 || bs&(bs-1) != 0 || size > 1<<62 {
		return nil, fmt.Errorf("%w: block size %d, disk size %d", ErrCorrupt, bs, size)
	}
	want := (int64(size) + bs - 1) / bs
	if count != uint64(want) || uint64(len(b)-hashHeaderSize) != count*sha256.Size {
		return nil, fmt.Errorf("%w: %d digests for a %d-byte disk in %d bytes", ErrCorrupt, count, size, len(b))
	}
	h := &BlockHashes{BlockSize: bs, Size: int64(size), Sums: make([][sha256.Size]byte, count)}
	for i := range h.Sums {
		copy(h.Sums[i][:], b[hashHeaderSize+i*sha256.Size:])
	}
	return h, nil
}
