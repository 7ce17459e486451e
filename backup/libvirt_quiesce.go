package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
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

// recoverLeftovers ends a pull-mode backup job that an interrupted vmmount
// (killed, or its host connection lost) left on the domain: its NBD socket
// lies in a vmmount-nbd- directory that no longer has a reader.
func (s *Domain) recoverLeftovers(ctx context.Context) error {
	var x string
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		typ, _, _, _, _, _, _, _, _, _, _, _, err := l.DomainGetJobInfo(s.dom)
		if err != nil || libvirt.DomainJobType(typ) == libvirt.DomainJobNone {
			return err
		}
		x, err = l.DomainBackupGetXMLDesc(s.dom, 0)
		if libvirtCode(err, libvirt.ErrNoDomainBackup) || libvirtCode(err, libvirt.ErrOperationInvalid) {
			return fmt.Errorf("%w: %s has another job running", ErrVMState, s.vm.Name)
		}
		return err
	})
	if err != nil || x == "" {
		return err
	}
	var b libvirtxml.DomainBackup
	if err := b.Unmarshal(x); err != nil {
		return fmt.Errorf("domain %s: backup job XML: %w", s.vm.Name, err)
	}
	sock := ""
	if b.Pull != nil && b.Pull.Server != nil && b.Pull.Server.UNIX != nil {
		sock = b.Pull.Server.UNIX.Socket
	}
	dir := filepath.Dir(sock)
	if sock == "" || !strings.HasPrefix(filepath.Base(dir), "vmmount-nbd-") {
		return fmt.Errorf("%w: %s has a backup job running that vmmount did not start", ErrVMState, s.vm.Name)
	}
	if pid, alive := ownerAlive(dir); alive {
		return fmt.Errorf("%w: another vmmount (pid %d) is backing %s up", ErrVMState, pid, s.vm.Name)
	}
	s.notify("%s: ending the backup job an interrupted vmmount left (%s)", s.vm.Name, sock)
	p := &pullSession{s: s}
	if err := p.abortJob(ctx); err != nil {
		return fmt.Errorf("domain %s: ending a leftover backup job: %w", s.vm.Name, err)
	}
	os.RemoveAll(dir)
	return nil
}

// The directory of a pull backup's NBD socket records its owner, so a
// later run can tell a job left by a dead process from one in use.
const ownerFile = "owner"

func writeOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), procStart(os.Getpid()))), 0o600)
}

// ownerAlive reports whether the process that wrote dir's owner file still
// runs (same pid and start time).
func ownerAlive(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return 0, false
	}
	var pid int
	var start string
	if _, err := fmt.Sscanf(string(b), "%d %s", &pid, &start); err != nil || pid <= 0 {
		return 0, false
	}
	return pid, start != "" && procStart(pid) == start
}

// procStart is a process's start time in clock ticks since boot (field 22
// of /proc/PID/stat), "" if it does not exist.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}
