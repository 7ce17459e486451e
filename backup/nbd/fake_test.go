package nbd

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// fakeServer answers the handshake for export "disk" of size bytes with one
// metadata context "base:allocation" (id 7), then for each request calls
// reply, which writes whatever bytes a test wants. It serves one client.
func fakeServer(t testing.TB, size int64, reply func(w io.Writer, req request)) string {
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serveHandshake(c, size)
		var b [requestSize]byte
		for {
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			req := request{Flags: be.Uint16(b[4:]), Type: be.Uint16(b[6:]), Handle: be.Uint64(b[8:]),
				Offset: be.Uint64(b[16:]), Length: be.Uint32(b[24:])}
			if req.Type == cmdDisc {
				return
			}
			reply(c, req)
		}
	}()
	return sock
}

func serveHandshake(c io.ReadWriter, size int64) {
	var hello []byte
	hello = be.AppendUint64(hello, initMagic)
	hello = be.AppendUint64(hello, optMagic)
	hello = be.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	c.Write(hello)
	var cf [4]byte
	io.ReadFull(c, cf[:])
	for {
		var h [optHeaderSize]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		opt := be.Uint32(h[8:])
		data := make([]byte, be.Uint32(h[12:]))
		io.ReadFull(c, data)
		rep := func(typ uint32, payload []byte) {
			var b []byte
			b = be.AppendUint64(b, optReplyMagic)
			b = be.AppendUint32(b, opt)
			b = be.AppendUint32(b, typ)
			b = be.AppendUint32(b, uint32(len(payload)))
			c.Write(append(b, payload...))
		}
		switch opt {
		case optSetMetaContext:
			rep(repMetaContext, append(be.AppendUint32(nil, 7), "base:allocation"...))
			rep(repAck, nil)
		case optGo:
			info := be.AppendUint16(nil, infoExport)
			info = be.AppendUint64(info, uint64(size))
			info = be.AppendUint16(info, flagHasFlags|flagReadOnly)
			rep(repInfo, info)
			rep(repAck, nil)
			return
		default:
			rep(repAck, nil)
		}
	}
}

func chunk(flags, typ uint16, handle uint64, payload []byte) []byte {
	var b []byte
	b = be.AppendUint32(b, structReplyMagic)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, handle)
	b = be.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func dataChunk(flags uint16, handle, off uint64, data []byte) []byte {
	return chunk(flags, replyTypeOffsetData, handle, append(be.AppendUint64(nil, off), data...))
}

// TestBadServerReplies checks that each protocol violation fails the
// request with ErrProtocol (or a ServerError) instead of returning wrong
// bytes, hanging or panicking.
func TestBadServerReplies(t *testing.T) {
	good := make([]byte, 4096)
	for i := range good {
		good[i] = byte(i)
	}
	tests := []struct {
		name  string
		reply func(w io.Writer, r request)
		proto bool // ErrProtocol expected, else ServerError
	}{
		{"bad magic", func(w io.Writer, r request) { w.Write(make([]byte, 20)) }, true},
		{"unknown handle", func(w io.Writer, r request) { w.Write(dataChunk(replyFlagDone, r.Handle+99, r.Offset, good)) }, true},
		{"chunk before the request", func(w io.Writer, r request) { w.Write(dataChunk(replyFlagDone, r.Handle, r.Offset-512, good)) }, true},
		{"chunk past the request", func(w io.Writer, r request) { w.Write(dataChunk(replyFlagDone, r.Handle, r.Offset+512, good)) }, true},
		{"gap", func(w io.Writer, r request) { w.Write(dataChunk(replyFlagDone, r.Handle, r.Offset, good[:2048])) }, true},
		{"overlap", func(w io.Writer, r request) {
			w.Write(dataChunk(0, r.Handle, r.Offset, good[:2048]))
			w.Write(dataChunk(0, r.Handle, r.Offset+1024, good[:2048]))
			w.Write(chunk(replyFlagDone, replyTypeNone, r.Handle, nil))
		}, true},
		{"simple reply to a read", func(w io.Writer, r request) {
			b := be.AppendUint32(nil, simpleReplyMagic)
			b = be.AppendUint32(b, 0)
			w.Write(be.AppendUint64(b, r.Handle))
		}, true},
		{"empty hole", func(w io.Writer, r request) {
			p := be.AppendUint64(nil, r.Offset)
			w.Write(chunk(replyFlagDone, replyTypeOffsetHole, r.Handle, be.AppendUint32(p, 0)))
		}, true},
		{"huge chunk", func(w io.Writer, r request) {
			w.Write(chunk(replyFlagDone, replyTypeOffsetData, r.Handle, nil)[:16])
			w.Write([]byte{0xff, 0xff, 0xff, 0xff})
		}, true},
		{"error chunk", func(w io.Writer, r request) {
			p := be.AppendUint32(nil, 5)
			p = be.AppendUint16(p, 4)
			w.Write(chunk(replyFlagDone, replyTypeError, r.Handle, append(p, "EIO!"...)))
		}, false},
		{"error message too long", func(w io.Writer, r request) {
			p := be.AppendUint32(nil, 5)
			p = be.AppendUint16(p, 100)
			w.Write(chunk(replyFlagDone, replyTypeError, r.Handle, p))
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock := fakeServer(t, 1<<20, tc.reply)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, "unix", sock, Options{Export: "disk"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan error, 1)
			go func() {
				_, err := c.ReadAt(make([]byte, 4096), 8192)
				done <- err
			}()
			select {
			case err := <-done:
				var se *ServerError
				if tc.proto && !errors.Is(err, ErrProtocol) {
					t.Errorf("got %v, want ErrProtocol", err)
				}
				if !tc.proto && !errors.As(err, &se) {
					t.Errorf("got %v, want a ServerError", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read hung")
			}
		})
	}
}

func TestBlockStatusBounds(t *testing.T) {
	sock := fakeServer(t, 1<<20, func(w io.Writer, r request) {
		p := be.AppendUint32(nil, 7)
		p = be.AppendUint32(p, r.Length+512) // longer than asked
		p = be.AppendUint32(p, StateHole)
		w.Write(chunk(replyFlagDone, replyTypeBlockStatus, r.Handle, p))
	})
	c, err := Dial(context.Background(), "unix", sock, Options{Export: "disk", MetaContexts: []string{"base:allocation"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.BlockStatus("base:allocation", 0, 4096); !errors.Is(err, ErrProtocol) {
		t.Errorf("descriptor past the request: %v", err)
	}
}

// FuzzReplies feeds arbitrary bytes as the server's replies after a valid
// handshake: the client must fail or succeed, never hang or panic.
func FuzzReplies(f *testing.F) {
	f.Add(dataChunk(replyFlagDone, 1, 0, make([]byte, 4096)))
	p := be.AppendUint32(nil, 7)
	p = be.AppendUint32(p, 4096)
	f.Add(chunk(replyFlagDone, replyTypeBlockStatus, 2, be.AppendUint32(p, 3)))
	f.Add(append(dataChunk(0, 1, 0, make([]byte, 100)), chunk(replyFlagDone, replyTypeOffsetHole, 1, be.AppendUint32(be.AppendUint64(nil, 100), 3996))...))
	f.Fuzz(func(t *testing.T, stream []byte) {
		srv, cli := net.Pipe()
		go func() {
			defer srv.Close()
			serveHandshake(srv, 1<<16)
			go io.Copy(io.Discard, srv)
			srv.Write(stream)
		}()
		neg, err := handshake(cli, "disk", []string{"base:allocation"})
		if err != nil {
			t.Fatal(err)
		}
		c := &Conn{c: cli, neg: neg, maxReq: DefaultMaxRequest, pending: map[uint64]*call{}, readDone: make(chan struct{})}
		go c.readLoop()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.ReadAt(make([]byte, 4096), 0)
		}()
		c.BlockStatus("base:allocation", 0, 4096)
		<-done
		c.Close()
	})
}
