package nbd

import "encoding/binary"

// Magic numbers (proto.md "Handshake" and "Transmission").
const (
	initMagic        = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic         = 0x49484156454f5054 // "IHAVEOPT"
	optReplyMagic    = 0x0003e889045565a9
	requestMagic     = 0x25609513
	simpleReplyMagic = 0x67446698
	structReplyMagic = 0x668e33ef
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0
	flagCNoZeroes      = 1 << 1
)

// Transmission flags.
const (
	flagHasFlags = 1 << 0
	flagReadOnly = 1 << 1
)

// Options.
const (
	optAbort           = 2
	optGo              = 7
	optStructuredReply = 8
	optSetMetaContext  = 10
)

// Option reply types; errors have bit 31 set.
const (
	repAck         = 1
	repInfo        = 3
	repMetaContext = 4
	repErrBit      = 1 << 31
)

// Info types of NBD_REP_INFO.
const (
	infoExport    = 0
	infoBlockSize = 3
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdDisc        = 2
	cmdBlockStatus = 7
)

// Structured reply flags and types.
const (
	replyFlagDone         = 1 << 0
	replyTypeNone         = 0
	replyTypeOffsetData   = 1
	replyTypeOffsetHole   = 2
	replyTypeBlockStatus  = 5
	replyTypeError        = 1<<15 + 1
	replyTypeErrorOffset  = 1<<15 + 2
	replyTypeErrBit       = 1 << 15
	maxStringLen          = 4096
	maxOptionReplyPayload = 1 << 16
)

// Block status flags of base:allocation.
const (
	StateHole = 1 << 0 // not allocated in the backing storage
	StateZero = 1 << 1 // reads as zeros
)

// Sizes of the fixed-size wire messages.
const (
	optHeaderSize       = 16
	optReplyHeaderSize  = 20
	requestSize         = 28
	simpleReplySize     = 16
	structReplyHdrSize  = 20
	exportInfoSize      = 2 + 8 + 2 // type, size, transmission flags
	blockSizeInfoSize   = 2 + 4*3
	blockDescriptorSize = 8
)

var be = binary.BigEndian

// request is a transmission request (proto.md "Request message").
type request struct {
	Flags  uint16
	Type   uint16
	Handle uint64
	Offset uint64
	Length uint32
}

func (r *request) encode(b []byte) {
	be.PutUint32(b[0:], requestMagic)
	be.PutUint16(b[4:], r.Flags)
	be.PutUint16(b[6:], r.Type)
	be.PutUint64(b[8:], r.Handle)
	be.PutUint64(b[16:], r.Offset)
	be.PutUint32(b[24:], r.Length)
}

// chunkHeader is a structured reply chunk header, or a simple reply
// (Length 0, Error set) normalized into the same shape.
type chunkHeader struct {
	Simple bool
	Flags  uint16
	Type   uint16
	Handle uint64
	Length uint32
	Error  uint32 // simple replies only
}

// decodeReplyStart reads the first 16 bytes of a reply; a structured chunk
// needs 4 more (its length), which more reports.
func decodeReplyStart(b []byte) (h chunkHeader, more int, ok bool) {
	switch be.Uint32(b[0:]) {
	case simpleReplyMagic:
		h.Simple = true
		h.Error = be.Uint32(b[4:])
		h.Handle = be.Uint64(b[8:])
		h.Flags = replyFlagDone
		return h, 0, true
	case structReplyMagic:
		h.Flags = be.Uint16(b[4:])
		h.Type = be.Uint16(b[6:])
		h.Handle = be.Uint64(b[8:])
		return h, 4, true
	}
	return h, 0, false
}

// optReplyHeader is an option reply header (proto.md "Fixed newstyle
// negotiation").
type optReplyHeader struct {
	Magic  uint64
	Option uint32
	Type   uint32
	Length uint32
}

func decodeOptReplyHeader(b []byte) optReplyHeader {
	return optReplyHeader{
		Magic:  be.Uint64(b[0:]),
		Option: be.Uint32(b[8:]),
		Type:   be.Uint32(b[12:]),
		Length: be.Uint32(b[16:]),
	}
}

// appendOption appends an option request with its payload.
func appendOption(b []byte, opt uint32, payload []byte) []byte {
	b = be.AppendUint64(b, optMagic)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// appendString appends a 32-bit length and the string.
func appendString(b []byte, s string) []byte {
	b = be.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
