package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/internal/virt"
)

// DefaultURI is the libvirt connection backups use unless told otherwise.
const DefaultURI = virt.DefaultURI

// Errors of the libvirt source; test with errors.Is.
var (
	// ErrLibvirtGone means the connection to libvirtd was lost.
	ErrLibvirtGone = errors.New("lost the connection to libvirtd")
	// ErrNoDomain means the domain does not exist (or no longer does).
	ErrNoDomain = fmt.Errorf("no such domain: %w", fs.ErrNotExist)
)

// hypervisor is a connection to libvirtd that reconnects when it was lost:
// undo actions (thaw, resume, end the job) must reach a daemon that was
// restarted meanwhile.
type hypervisor struct {
	uri *url.URL
	mu  sync.Mutex
	l   *libvirt.Libvirt
}

// connectLibvirt opens uri, which must name this host's hypervisor: the
// disks are read here (pull-mode NBD over a Unix socket, image files).
func connectLibvirt(ctx context.Context, uri string) (*hypervisor, error) {
	u, err := virt.LocalURI(uri, "vmmount backs up VMs of this host")
	if err != nil {
		return nil, err
	}
	h := &hypervisor{uri: u}
	if _, err := h.conn(ctx, false); err != nil {
		return nil, err
	}
	return h, nil
}

// conn returns a live connection, reconnecting if the last one was lost;
// with retry it keeps trying (libvirtd restarting) until ctx ends.
func (h *hypervisor) conn(ctx context.Context, retry bool) (*libvirt.Libvirt, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.l != nil && h.l.IsConnected() {
		return h.l, nil
	}
	var last error
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		l, err := virt.Dial(ctx, h.uri)
		if err == nil {
			h.l = l
			return l, nil
		}
		last = err
		if !retry {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v): %w", ErrLibvirtGone, last, ctx.Err())
		case <-time.After(delay):
		}
	}
	return nil, fmt.Errorf("connecting to %s: %w", h.uri, last)
}

// do runs fn on a live connection. A call libvirtd does not answer is
// abandoned when ctx ends. With retry (cleanup), a lost connection is
// re-established and fn tried again until ctx ends.
func (h *hypervisor) do(ctx context.Context, retry bool, fn func(l *libvirt.Libvirt) error) error {
	for {
		l, err := h.conn(ctx, retry)
		if err != nil {
			return err
		}
		ch := make(chan error, 1)
		go func() { ch <- fn(l) }()
		select {
		case err = <-ch:
		case <-ctx.Done():
			return fmt.Errorf("libvirtd did not answer: %w", ctx.Err())
		}
		if err == nil || l.IsConnected() || !retry {
			if err != nil && !l.IsConnected() {
				err = fmt.Errorf("%w: %v", ErrLibvirtGone, err)
			}
			return err
		}
		// The daemon went away during the call: try again on a new
		// connection.
	}
}

// lost is closed when the current connection drops.
func (h *hypervisor) lost() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.l == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return h.l.Disconnected()
}

func (h *hypervisor) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.l != nil {
		h.l.Disconnect()
		h.l = nil
	}
}

// libvirtCode reports whether err is a libvirt error with code.
func libvirtCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}
