package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// A live backup works in a directory of its own under the scratch
// directory (vmmount-nbd-*): the NBD socket, QEMU's scratch files, the
// owner (pid and start time) and the state it put the VM in (paused,
// frozen), written before each change and cleared after it is undone. A
// vmmount killed (-9, power loss of the host process) cannot undo
// anything; the next backup of the VM finds the directory of a dead owner
// and heals what it says: thaws, resumes, ends the job.

const (
	scratchDirPrefix = "vmmount-nbd-"
	ownerFile        = "owner"
	stateFile        = "state.json"
)

// scratchState is what a live backup did to its VM.
type scratchState struct {
	Domain string `json:"domain"` // UUID
	Name   string `json:"name"`
	Paused bool   `json:"paused,omitempty"`
	Frozen bool   `json:"frozen,omitempty"`
	// ShutDown: an offline backup shut the VM down (--shutdown) and
	// starts it again at the end.
	ShutDown bool `json:"shutdown,omitempty"`
}

func writeScratchState(dir string, st scratchState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func readScratchState(dir string) (scratchState, error) {
	var st scratchState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// scratchBase is where the domain's scratch directories go.
func (s *Domain) scratchBase() string {
	if s.ScratchDir != "" {
		return s.ScratchDir
	}
	return DefaultScratchDir
}

// newScratchDir makes a scratch directory recording st and this process as
// its owner, for the guard or the next backup to heal from if this one
// dies; u removes it.
func (s *Domain) newScratchDir(u *undoStack, st scratchState) (string, error) {
	dir, err := os.MkdirTemp(s.scratchBase(), scratchDirPrefix)
	if err != nil {
		return "", err
	}
	u.push("removing "+dir, func(context.Context) error { return os.RemoveAll(dir) })
	if err := writeOwner(dir); err != nil {
		return "", err
	}
	return dir, writeScratchState(dir, st)
}

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

// recoverLeftovers heals what a killed backup of this domain left:
// filesystems frozen, the VM paused or shut down, a backup job still
// exporting. It
// refuses to go on while another live vmmount backs the domain up. It
// returns what it did.
func (s *Domain) recoverLeftovers(ctx context.Context) ([]string, error) {
	var did []string
	dirs, _ := filepath.Glob(filepath.Join(s.scratchBase(), scratchDirPrefix+"*"))
	for _, dir := range dirs {
		st, err := readScratchState(dir)
		if err != nil || st.Domain != s.vm.UUID {
			continue
		}
		if pid, alive := ownerAlive(dir); alive {
			if pid == os.Getpid() {
				continue
			}
			return did, fmt.Errorf("%w: another vmmount (pid %d) is backing %s up", ErrVMState, pid, s.vm.Name)
		}
		p := &pullSession{s: s}
		if st.Frozen {
			if err := p.thaw(ctx); err != nil {
				return did, fmt.Errorf("thawing %s, left frozen by an interrupted backup: %w", s.vm.Name, err)
			}
			did = append(did, "thawed the filesystems of "+s.vm.Name+", left frozen by an interrupted backup")
		}
		if st.Paused {
			if err := p.resume(ctx); err != nil {
				return did, fmt.Errorf("resuming %s, left paused by an interrupted backup: %w", s.vm.Name, err)
			}
			did = append(did, "resumed "+s.vm.Name+", left paused by an interrupted backup")
		}
		if st.ShutDown {
			started, err := (&offlineSession{s: s}).startIfOff(ctx)
			if err != nil {
				return did, fmt.Errorf("starting %s, shut down by an interrupted backup: %w", s.vm.Name, err)
			}
			if started {
				did = append(did, "started "+s.vm.Name+" again, shut down by an interrupted backup")
			}
		}
		if err := s.abortLeftoverJob(ctx, dir); err != nil {
			return did, err
		}
		if err := os.RemoveAll(dir); err != nil {
			return did, err
		}
		did = append(did, "ended the backup job an interrupted vmmount left ("+dir+")")
	}
	// A job whose directory is gone (the scratch directory cleaned).
	if err := s.abortLeftoverJob(ctx, ""); err != nil {
		return did, err
	}
	return did, nil
}

// abortLeftoverJob ends the domain's pull backup job if vmmount started it
// from dir ("" for any directory whose owner is gone).
func (s *Domain) abortLeftoverJob(ctx context.Context, dir string) error {
	var x string
	err := s.h.do(ctx, false, func(l *libvirt.Libvirt) error {
		typ, _, _, _, _, _, _, _, _, _, _, _, err := l.DomainGetJobInfo(s.dom)
		if libvirtCode(err, libvirt.ErrNoSupport) {
			return nil // no jobs on this driver
		}
		if libvirtCode(err, libvirt.ErrOperationInvalid) {
			return nil // not running: no job
		}
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
	jdir := filepath.Dir(sock)
	if sock == "" || !strings.HasPrefix(filepath.Base(jdir), scratchDirPrefix) {
		return fmt.Errorf("%w: %s has a backup job running that vmmount did not start", ErrVMState, s.vm.Name)
	}
	if dir != "" && jdir != dir {
		return nil
	}
	if pid, alive := ownerAlive(jdir); alive {
		return fmt.Errorf("%w: another vmmount (pid %d) is backing %s up", ErrVMState, pid, s.vm.Name)
	}
	p := &pullSession{s: s}
	if err := p.abortJob(ctx); err != nil {
		return fmt.Errorf("domain %s: ending a leftover backup job: %w", s.vm.Name, err)
	}
	os.RemoveAll(jdir)
	return nil
}

// Heal puts right what killed backups of the domain left behind
// (filesystems frozen, the VM paused or shut down, a backup job exporting),
// as the next
// backup would. The backup command runs it from a guard process the
// moment a backup dies without cleaning up.
func (s *Domain) Heal(ctx context.Context) ([]string, error) {
	if _, err := s.Open(ctx); err != nil {
		return nil, err
	}
	return s.recoverLeftovers(ctx)
}
