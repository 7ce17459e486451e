package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// errNoAgent means the guest agent is not configured or not answering, so
// nothing was frozen.
var errNoAgent = errors.New("no guest agent")

// freeze freezes the guest's filesystems through the agent and returns how
// many.
func (s *Domain) freeze(ctx context.Context) (int, error) {
	var n int32
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		var err error
		n, err = l.DomainFsfreeze(s.dom, nil, 0)
		return err
	})
	switch {
	case err == nil:
		return int(n), nil
	case libvirtCode(err, libvirt.ErrArgumentUnsupported), libvirtCode(err, libvirt.ErrOperationUnsupported):
		return 0, fmt.Errorf("%w: %v", errNoAgent, err)
	case libvirtCode(err, libvirt.ErrAgentUnresponsive):
		// Most likely no agent runs in the guest. In case it froze and
		// the answer got lost, thaw once, briefly.
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s.h.do(tctx, false, func(l *libvirt.Libvirt) error { _, err := l.DomainFsthaw(s.dom, nil, 0); return err })
		return 0, fmt.Errorf("%w: %v", errNoAgent, err)
	}
	return 0, s.vmErr(fmt.Errorf("freezing filesystems: %w", err))
}
