package nbd

import (
	"errors"
	"fmt"
	"io"
)

// Errors; test with errors.Is.
var (
	// ErrProtocol means the server broke the protocol (bad magic, a length
	// or offset out of bounds, an unknown handle).
	ErrProtocol = errors.New("nbd: protocol violation")
	// ErrUnsupported means the server lacks something this client needs
	// (fixed newstyle, structured replies, a metadata context).
	ErrUnsupported = errors.New("nbd: server does not support")
	// ErrClosed means the connection is closed or was lost.
	ErrClosed = errors.New("nbd: connection closed")
)

// ServerError is an error the server reported for an option or a request.
type ServerError struct {
	Op   string // "NBD_OPT_GO", "read at 4096+65536", ...
	Code uint32 // errno-like value (proto.md "Error values") or option reply type
	Msg  string // the server's message, if any
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("nbd: %s: server error %d", e.Op, e.Code)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// negotiated is what the handshake established.
type negotiated struct {
	size     int64
	flags    uint16
	maxBlock uint32            // largest request the server takes, 0 if not said
	contexts map[string]uint32 // metadata context name -> id
}

// handshake runs the fixed newstyle negotiation up to the transmission
// phase: structured replies, the metadata contexts, then NBD_OPT_GO.
func handshake(rw io.ReadWriter, export string, contexts []string) (*negotiated, error) {
	var hello [18]byte
	if _, err := io.ReadFull(rw, hello[:]); err != nil {
		return nil, fmt.Errorf("nbd: reading greeting: %w", err)
	}
	if be.Uint64(hello[0:]) != initMagic {
		return nil, protoErr("greeting magic %#x", be.Uint64(hello[0:]))
	}
	if m := be.Uint64(hello[8:]); m != optMagic {
		return nil, fmt.Errorf("%w fixed newstyle negotiation (magic %#x: an oldstyle server)", ErrUnsupported, m)
	}
	hflags := be.Uint16(hello[16:])
	if hflags&flagFixedNewstyle == 0 {
		return nil, fmt.Errorf("%w fixed newstyle negotiation", ErrUnsupported)
	}
	cflags := uint32(flagCFixedNewstyle)
	if hflags&flagNoZeroes != 0 {
		cflags |= flagCNoZeroes
	}
	if _, err := rw.Write(be.AppendUint32(nil, cflags)); err != nil {
		return nil, fmt.Errorf("nbd: sending client flags: %w", err)
	}

	n := &negotiated{contexts: map[string]uint32{}}
	if err := option(rw, optStructuredReply, nil, "NBD_OPT_STRUCTURED_REPLY", nil); err != nil {
		return nil, err
	}
	if len(contexts) > 0 {
		p := appendString(nil, export)
		p = be.AppendUint32(p, uint32(len(contexts)))
		for _, c := range contexts {
			p = appendString(p, c)
		}
		err := option(rw, optSetMetaContext, p, "NBD_OPT_SET_META_CONTEXT", func(typ uint32, data []byte) error {
			if typ != repMetaContext {
				return protoErr("reply type %d to NBD_OPT_SET_META_CONTEXT", typ)
			}
			if len(data) < 4 || len(data) > 4+maxStringLen {
				return protoErr("meta context reply of %d bytes", len(data))
			}
			n.contexts[string(data[4:])] = be.Uint32(data)
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, c := range contexts {
			if _, ok := n.contexts[c]; !ok {
				return nil, fmt.Errorf("%w metadata context %q on export %q", ErrUnsupported, c, export)
			}
		}
	}

	p := appendString(nil, export)
	p = be.AppendUint16(p, 1)
	p = be.AppendUint16(p, infoBlockSize)
	gotExport := false
	err := option(rw, optGo, p, "NBD_OPT_GO", func(typ uint32, data []byte) error {
		if typ != repInfo {
			return protoErr("reply type %d to NBD_OPT_GO", typ)
		}
		if len(data) < 2 {
			return protoErr("NBD_REP_INFO of %d bytes", len(data))
		}
		switch be.Uint16(data) {
		case infoExport:
			if len(data) != exportInfoSize {
				return protoErr("NBD_INFO_EXPORT of %d bytes", len(data))
			}
			size := be.Uint64(data[2:])
			if size > 1<<62 {
				return protoErr("export size %d", size)
			}
			n.size, n.flags = int64(size), be.Uint16(data[10:])
			gotExport = true
		case infoBlockSize:
			if len(data) != blockSizeInfoSize {
				return protoErr("NBD_INFO_BLOCK_SIZE of %d bytes", len(data))
			}
			n.maxBlock = be.Uint32(data[10:])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !gotExport {
		return nil, protoErr("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
	}
	return n, nil
}

// option sends one option and reads its replies up to the final ACK or
// error; each non-final reply goes to each.
func option(rw io.ReadWriter, opt uint32, payload []byte, name string, each func(typ uint32, data []byte) error) error {
	if _, err := rw.Write(appendOption(nil, opt, payload)); err != nil {
		return fmt.Errorf("nbd: sending %s: %w", name, err)
	}
	var hb [optReplyHeaderSize]byte
	for {
		if _, err := io.ReadFull(rw, hb[:]); err != nil {
			return fmt.Errorf("nbd: reading reply to %s: %w", name, err)
		}
		h := decodeOptReplyHeader(hb[:])
		if h.Magic != optReplyMagic {
			return protoErr("option reply magic %#x", h.Magic)
		}
		if h.Option != opt {
			return protoErr("reply to option %d while waiting for %s", h.Option, name)
		}
		if h.Length > maxOptionReplyPayload {
			return protoErr("option reply of %d bytes", h.Length)
		}
		data := make([]byte, h.Length)
		if _, err := io.ReadFull(rw, data); err != nil {
			return fmt.Errorf("nbd: reading reply to %s: %w", name, err)
		}
		switch {
		case h.Type == repAck:
			return nil
		case h.Type&repErrBit != 0:
			err := &ServerError{Op: name, Code: h.Type &^ repErrBit, Msg: printable(data)}
			if h.Type == repErrBit|1 { // NBD_REP_ERR_UNSUP
				return fmt.Errorf("%w %s: %w", ErrUnsupported, name, err)
			}
			return err
		case each == nil:
			return protoErr("unexpected reply type %d to %s", h.Type, name)
		default:
			if err := each(h.Type, data); err != nil {
				return err
			}
		}
	}
}

// printable keeps a server message short and free of control bytes.
func printable(b []byte) string {
	if len(b) > 512 {
		b = b[:512]
	}
	out := make([]rune, 0, len(b))
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}
