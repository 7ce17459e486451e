package nbd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
)

// DefaultMaxRequest bounds one read request when the server states no
// maximum (QEMU takes up to 32 MiB; 1 MiB requests in flight together
// read fastest from QEMU here).
const DefaultMaxRequest = 1 << 20

// maxExtents bounds the block descriptors accepted in one reply.
const maxExtents = 1 << 20

// Options describe the export to open.
type Options struct {
	// Export is the export name ("vda" for a libvirt pull backup of vda).
	Export string
	// MetaContexts to select, e.g. "base:allocation",
	// "qemu:dirty-bitmap:backup-vda". Each must exist or Dial fails.
	MetaContexts []string
}

// Conn is an open export in the transmission phase. Its methods are safe
// for concurrent use; requests are pipelined over the one connection.
type Conn struct {
	c        net.Conn
	neg      *negotiated
	maxReq   int64
	wmu      sync.Mutex // serializes request writes
	mu       sync.Mutex // guards pending, next, err
	pending  map[uint64]*call
	next     uint64
	err      error // set once the connection is unusable
	readDone chan struct{}
}

// call is one request in flight.
type call struct {
	typ    uint16
	off    int64
	length int64
	buf    []byte     // read: destination, len == length
	spans  [][2]int64 // read: byte ranges of buf filled so far
	ext    []Extent   // block status: descriptors of ctxID
	ctxID  uint32     // block status: the context asked about
	gotExt bool       // block status: the context's chunk arrived
	err    error      // first error chunk
	done   chan error // receives the outcome once
}

// Extent is one block status descriptor.
type Extent struct {
	Off, Len int64
	Flags    uint32
}

// Dial connects to an NBD server ("unix", "/path/to.sock" or "tcp",
// "host:port") and opens the export. ctx bounds the dial and the handshake.
func Dial(ctx context.Context, network, addr string, opts Options) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	neg, err := handshake(nc, opts.Export, opts.MetaContexts)
	if !stop() {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("export %q on %s: %w", opts.Export, addr, err)
	}
	c := &Conn{c: nc, neg: neg, maxReq: DefaultMaxRequest, pending: map[uint64]*call{}, readDone: make(chan struct{})}
	if neg.maxBlock >= 4096 && int64(neg.maxBlock) < c.maxReq {
		c.maxReq = int64(neg.maxBlock)
	}
	go c.readLoop()
	return c, nil
}

// Size is the export's size in bytes.
func (c *Conn) Size() int64 { return c.neg.size }

// ReadOnly reports whether the server exports read-only.
func (c *Conn) ReadOnly() bool { return c.neg.flags&flagReadOnly != 0 }

// HasContext reports whether a metadata context was negotiated.
func (c *Conn) HasContext(name string) bool { _, ok := c.neg.contexts[name]; return ok }

// Close ends the session with NBD_CMD_DISC and closes the connection.
// Requests still in flight fail.
func (c *Conn) Close() error {
	c.mu.Lock()
	alive := c.err == nil
	if alive {
		c.err = ErrClosed
	}
	c.mu.Unlock()
	if alive {
		var b [requestSize]byte
		(&request{Type: cmdDisc}).encode(b[:])
		c.wmu.Lock()
		c.c.Write(b[:])
		c.wmu.Unlock()
	}
	err := c.c.Close()
	<-c.readDone
	return err
}

// ReadAt reads len(p) bytes at off (io.ReaderAt): io.EOF past the end.
// Large reads are split into requests the server takes and sent together.
func (c *Conn) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if off >= c.neg.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(int64(len(p)), c.neg.size-off)
	var calls []*call
	for done := int64(0); done < n; {
		k := min(c.maxReq, n-done)
		cl := &call{typ: cmdRead, off: off + done, length: k, buf: p[done : done+k]}
		if err := c.send(cl); err != nil {
			c.wait(calls)
			return 0, err
		}
		calls = append(calls, cl)
		done += k
	}
	if err := c.wait(calls); err != nil {
		return 0, err
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// wait collects every call's outcome and returns the first error.
func (c *Conn) wait(calls []*call) error {
	var first error
	for _, cl := range calls {
		if err := <-cl.done; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// BlockStatus returns the descriptors of metadata context name for
// [off, off+length), consecutive from off. The server may describe less
// than asked (never nothing); callers continue from the end of the last
// extent.
func (c *Conn) BlockStatus(name string, off, length int64) ([]Extent, error) {
	id, ok := c.neg.contexts[name]
	if !ok {
		return nil, fmt.Errorf("%w metadata context %q (not negotiated)", ErrUnsupported, name)
	}
	if off < 0 || length <= 0 || off >= c.neg.size {
		return nil, fmt.Errorf("nbd: block status of %d+%d on a %d-byte export", off, length, c.neg.size)
	}
	length = min(length, c.neg.size-off, 1<<32-1<<20)
	cl := &call{typ: cmdBlockStatus, off: off, length: length, ctxID: id}
	if err := c.send(cl); err != nil {
		return nil, err
	}
	if err := <-cl.done; err != nil {
		return nil, err
	}
	return cl.ext, nil
}

// send registers cl and writes its request.
func (c *Conn) send(cl *call) error {
	cl.done = make(chan error, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.next++
	h := c.next
	c.pending[h] = cl
	c.mu.Unlock()
	var b [requestSize]byte
	(&request{Type: cl.typ, Handle: h, Offset: uint64(cl.off), Length: uint32(cl.length)}).encode(b[:])
	c.wmu.Lock()
	_, err := c.c.Write(b[:])
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: sending request: %v", ErrClosed, err))
		return c.errOr(err)
	}
	return nil
}

func (c *Conn) errOr(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return err
}

// fail makes the connection unusable and fails every call in flight.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	ferr := c.err
	pend := c.pending
	c.pending = map[uint64]*call{}
	c.mu.Unlock()
	c.c.Close()
	for _, cl := range pend {
		cl.done <- ferr
	}
}

// readLoop reads replies until the connection ends and hands each to its
// call.
func (c *Conn) readLoop() {
	defer close(c.readDone)
	r := bufio.NewReaderSize(c.c, 256<<10)
	for {
		if err := c.readReply(r); err != nil {
			c.mu.Lock()
			closed := c.err == ErrClosed
			c.mu.Unlock()
			if closed {
				err = ErrClosed
			} else if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("%w: the server hung up", ErrClosed)
			}
			c.fail(err)
			return
		}
	}
}

func (c *Conn) readReply(r *bufio.Reader) error {
	var hb [structReplyHdrSize]byte
	if _, err := io.ReadFull(r, hb[:simpleReplySize]); err != nil {
		return err
	}
	h, more, ok := decodeReplyStart(hb[:])
	if !ok {
		return protoErr("reply magic %#x", be.Uint32(hb[:]))
	}
	if more > 0 {
		if _, err := io.ReadFull(r, hb[simpleReplySize:]); err != nil {
			return err
		}
		h.Length = be.Uint32(hb[16:])
	}
	c.mu.Lock()
	cl := c.pending[h.Handle]
	c.mu.Unlock()
	if cl == nil {
		return protoErr("reply for unknown handle %d", h.Handle)
	}
	if h.Simple {
		// Only payload-free replies may be simple once structured replies
		// are on (proto.md "Simple reply message").
		if cl.typ == cmdRead && h.Error == 0 {
			return protoErr("simple reply to a read")
		}
		if h.Error != 0 {
			cl.err = &ServerError{Op: cl.describe(), Code: h.Error}
		}
	} else if err := c.readChunk(r, h, cl); err != nil {
		return err
	}
	if h.Flags&replyFlagDone == 0 {
		return nil
	}
	c.mu.Lock()
	delete(c.pending, h.Handle)
	c.mu.Unlock()
	cl.done <- cl.finish()
	return nil
}

func (cl *call) describe() string {
	if cl.typ == cmdRead {
		return fmt.Sprintf("read of %d bytes at %d", cl.length, cl.off)
	}
	return fmt.Sprintf("block status of %d bytes at %d", cl.length, cl.off)
}

// readChunk consumes one structured chunk's payload into cl.
func (c *Conn) readChunk(r *bufio.Reader, h chunkHeader, cl *call) error {
	n := int64(h.Length)
	switch {
	case h.Type == replyTypeNone:
		if n != 0 || h.Flags&replyFlagDone == 0 {
			return protoErr("NBD_REPLY_TYPE_NONE with %d bytes, flags %#x", n, h.Flags)
		}
		return nil
	case h.Type == replyTypeOffsetData && cl.typ == cmdRead:
		if n <= 8 || n-8 > cl.length {
			return protoErr("data chunk of %d bytes for a %d-byte read", n, cl.length)
		}
		var ob [8]byte
		if _, err := io.ReadFull(r, ob[:]); err != nil {
			return err
		}
		lo, err := cl.span(be.Uint64(ob[:]), n-8)
		if err != nil {
			return err
		}
		_, err = io.ReadFull(r, cl.buf[lo:lo+n-8])
		return err
	case h.Type == replyTypeOffsetHole && cl.typ == cmdRead:
		if n != 12 {
			return protoErr("hole chunk of %d bytes", n)
		}
		var b [12]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return err
		}
		hl := int64(be.Uint32(b[8:]))
		if hl == 0 {
			return protoErr("empty hole chunk")
		}
		lo, err := cl.span(be.Uint64(b[:]), hl)
		if err != nil {
			return err
		}
		clear(cl.buf[lo : lo+hl])
		return nil
	case h.Type == replyTypeBlockStatus && cl.typ == cmdBlockStatus:
		if n < 4+blockDescriptorSize || (n-4)%blockDescriptorSize != 0 || (n-4)/blockDescriptorSize > maxExtents {
			return protoErr("block status chunk of %d bytes", n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		if be.Uint32(b) != cl.ctxID {
			return nil // another context's answer; only one is asked for
		}
		if cl.gotExt {
			return protoErr("two block status chunks for one context")
		}
		cl.gotExt = true
		pos := cl.off
		for d := b[4:]; len(d) > 0; d = d[blockDescriptorSize:] {
			l := int64(be.Uint32(d))
			if l == 0 || pos+l > cl.off+cl.length {
				return protoErr("block status descriptor of %d bytes at %d past the %d+%d asked", l, pos, cl.off, cl.length)
			}
			cl.ext = append(cl.ext, Extent{Off: pos, Len: l, Flags: be.Uint32(d[4:])})
			pos += l
		}
		return nil
	case h.Type&replyTypeErrBit != 0:
		if n < 6 || n > 6+maxStringLen+8 {
			return protoErr("error chunk of %d bytes", n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		ml := int64(be.Uint16(b[4:]))
		if 6+ml > n {
			return protoErr("error message of %d bytes in a %d-byte chunk", ml, n)
		}
		if cl.err == nil {
			cl.err = &ServerError{Op: cl.describe(), Code: be.Uint32(b), Msg: printable(b[6 : 6+ml])}
		}
		return nil
	}
	return protoErr("reply chunk type %d to a %s", h.Type, cl.describe())
}

// span checks that a content chunk lies inside the request, records it,
// and returns its offset in the buffer. Overlaps and gaps are found by
// finish; the number of chunks is bounded by the request's sectors.
func (cl *call) span(off uint64, n int64) (int64, error) {
	if off < uint64(cl.off) || off-uint64(cl.off) > uint64(cl.length) || n > cl.length-int64(off-uint64(cl.off)) {
		return 0, protoErr("chunk %d+%d outside the read %d+%d", off, n, cl.off, cl.length)
	}
	if int64(len(cl.spans)) > cl.length/512+64 {
		return 0, protoErr("more than %d chunks for a %d-byte read", len(cl.spans), cl.length)
	}
	lo := int64(off - uint64(cl.off))
	cl.spans = append(cl.spans, [2]int64{lo, lo + n})
	return lo, nil
}

// finish decides a call's outcome once its last chunk came.
func (cl *call) finish() error {
	if cl.err != nil {
		return cl.err
	}
	switch cl.typ {
	case cmdRead:
		slices.SortFunc(cl.spans, func(a, b [2]int64) int { return int(a[0] - b[0]) })
		pos := int64(0)
		for _, s := range cl.spans {
			if s[0] != pos {
				return protoErr("read of %d bytes at %d: chunks overlap or leave a gap at %d", cl.length, cl.off, cl.off+min(pos, s[0]))
			}
			pos = s[1]
		}
		if pos != cl.length {
			return protoErr("read of %d bytes at %d answered with only %d bytes", cl.length, cl.off, pos)
		}
	case cmdBlockStatus:
		if !cl.gotExt {
			return protoErr("block status reply without the asked context")
		}
	}
	return nil
}
