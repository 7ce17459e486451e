package backup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// hookProgress calls fn on the first bytes copied, blocking the copy
// until fn returns.
type hookProgress struct {
	once sync.Once
	fn   func()
}

func (h *hookProgress) Start(string, int64) {}
func (h *hookProgress) Finish()             {}
func (h *hookProgress) Add(int64)           { h.once.Do(h.fn) }

// vmSane checks the guest runs, its filesystems are thawed (asked of the
// agent), no job is left on it, and no vmmount checkpoint but keep.
func vmSane(t *testing.T, g *testimages.Guest, keep ...string) {
	t.Helper()
	if st, err := g.State(); err != nil || st != libvirt.DomainRunning {
		t.Errorf("guest state %d (%v), want running", st, err)
	}
	res, err := g.Conn.QEMUDomainAgentCommand(g.Dom, `{"execute":"guest-fsfreeze-status"}`, 10, 0)
	if err != nil || len(res) == 0 || !strings.Contains(res[0], "thawed") {
		t.Errorf("guest filesystems: %v %v, want thawed", res, err)
	}
	typ, _, _, _, _, _, _, _, _, _, _, _, err := g.Conn.DomainGetJobInfo(g.Dom)
	if err != nil || libvirt.DomainJobType(typ) != libvirt.DomainJobNone {
		t.Errorf("job %d (%v) left on the guest", typ, err)
	}
	if cps := vmmountCheckpoints(t, g); strings.Join(cps, ",") != strings.Join(keep, ",") {
		t.Errorf("checkpoints %v, want %v", cps, keep)
	}
}

// pointsIntact verifies every point of vm and checks no partial point is
// left (unless partialOK: a killed backup's, removed by the next run).
func pointsIntact(t *testing.T, r *repo.Repo, vm string, n int, partialOK ...bool) {
	t.Helper()
	reps, err := Verify(context.Background(), r, vm, nil, VerifyOptions{NoFilesystems: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != n {
		t.Errorf("%d points, want %d", len(reps), n)
	}
	for _, rep := range reps {
		if !rep.OK {
			t.Errorf("point %s damaged: %v", rep.Point, rep.Faults)
		}
	}
	ents, _ := os.ReadDir(r.VMDir(vm))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".partial-") && len(partialOK) == 0 {
			t.Errorf("partial point left: %s", e.Name())
		}
	}
}

// faultGuest boots a guest whose disk holds 24 MiB of random data, so a
// copy lasts long enough to be interrupted.
func faultGuest(t *testing.T) (*testimages.Guest, testimages.GuestDisk) {
	rnd := make([]byte, 24<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(rnd); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			rnd[i+k] = byte(v >> (8 * k))
		}
	}
	return liveGuestDisk(t, testimages.GuestOptions{}, testimages.GuestDiskOptions{SizeMiB: 96,
		Files: map[string]string{"/data/big.bin": string(rnd)}})
}

// TestLibvirtFaults interrupts live backups every way the issue lists:
// Ctrl-C in snapshot and pause mode, libvirtd stopped mid-copy, the
// repository disk full, a damaged previous point, and kill -9 of the
// vmmount process (snapshot and pause). Each time: earlier points intact,
// the VM running and thawed, a clear error, and the next backup works.
func TestLibvirtFaults(t *testing.T) {
	g, _ := faultGuest(t)
	r := newRepo(t)
	ctx := context.Background()
	opts := Options{Now: testClock()}
	dom := func(mode string) *Domain { return &Domain{Name: g.Name, Mode: mode} }
	res, err := Run(ctx, r, dom(ModeSnapshot), opts)
	if err != nil {
		t.Fatal(err)
	}
	cp := res.Point.Manifest.Disks[0].Checkpoint
	npoints := 1

	for _, mode := range []string{ModeSnapshot, ModePause} {
		t.Run("cancel during "+mode, func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			o := opts
			o.Progress = &hookProgress{fn: cancel}
			_, err := Run(cctx, r, dom(mode), o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled backup: %v", err)
			}
			vmSane(t, g, cp)
			pointsIntact(t, r, g.Name, npoints)
		})
	}

	t.Run("disk full", func(t *testing.T) {
		dir := t.TempDir()
		testimages.MustRun(t, "mount", "-t", "tmpfs", "-o", "size=200m", "vmmount-test-full", dir)
		t.Cleanup(func() { testimages.Run("umount", dir) })
		small, err := repo.OpenOrInit(filepath.Join(dir, "repo"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(ctx, small, dom(ModeSnapshot), opts)
		if err != nil {
			t.Fatalf("first backup into the small repository: %v", err)
		}
		// Leave 8 MiB: not enough for another full point.
		var fs syscall.Statfs_t
		syscall.Statfs(dir, &fs)
		filler := int64(fs.Bavail)*fs.Bsize - 8<<20
		testimages.MustRun(t, "fallocate", "-l", fmt.Sprint(filler), filepath.Join(dir, "filler"))
		o := opts
		o.Full = true
		_, err = Run(ctx, small, dom(ModeSnapshot), o)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("backup into a full repository: %v, want ENOSPC", err)
		}
		t.Logf("disk full: %v", err)
		// The two repositories share the VM: the small one's checkpoint
		// replaced the other's.
		cp = res.Point.Manifest.Disks[0].Checkpoint
		vmSane(t, g, cp)
		pointsIntact(t, small, g.Name, 1)
	})

	t.Run("damaged previous point", func(t *testing.T) {
		latest, err := r.Latest(g.Name)
		if err != nil {
			t.Fatal(err)
		}
		img := latest.Path("vda.qcow2")
		flipByte(t, img, 1)
		_, err = Run(ctx, r, dom(ModeSnapshot), opts)
		flipByte(t, img, 1)
		if !errors.Is(err, ErrParentCorrupt) || !strings.Contains(err.Error(), latest.Ref()) || !strings.Contains(err.Error(), "--full") {
			t.Fatalf("backup on a damaged point: %v", err)
		}
		vmSane(t, g, cp)
		pointsIntact(t, r, g.Name, npoints)
	})

	t.Run("libvirtd stopped", func(t *testing.T) {
		// No other test process may be using the daemon it stops.
		testimages.LibvirtExclusive(t)
		pidb, err := os.ReadFile("/run/vmmount-libvirt/libvirtd.pid")
		if err != nil {
			testimages.Missing(t, "libvirtd not started by scripts/libvirt-up.sh: %v", err)
		}
		var pid int
		fmt.Sscan(string(pidb), &pid)
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "libvirtd" {
			testimages.Missing(t, "the libvirtd of /run/vmmount-libvirt/libvirtd.pid (%d) is not running", pid)
		}
		restarted := make(chan error, 1)
		o := opts
		o.Progress = &hookProgress{fn: func() {
			// As scripts/libvirt-down.sh: SIGTERM, SIGKILL after 10 s.
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; syscall.Kill(pid, 0) == nil && procStart(pid) != ""; i++ {
				if i == 200 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				if i > 400 {
					t.Errorf("libvirtd %d does not stop", pid)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // the client sees the socket close
			go func() {
				time.Sleep(2 * time.Second)
				restarted <- startLibvirtd()
			}()
		}}
		_, err = Run(ctx, r, dom(ModeSnapshot), o)
		if rerr := <-restarted; rerr != nil {
			t.Fatalf("restarting libvirtd: %v", rerr)
		}
		if !errors.Is(err, ErrLibvirtGone) {
			t.Fatalf("backup with libvirtd stopped: %v, want ErrLibvirtGone", err)
		}
		t.Logf("libvirtd stopped: %v", err)
		// The old connection died with the daemon. The new one is left
		// open: the guest's own cleanup, registered first, runs last.
		u, _ := url.Parse(string(libvirt.QEMUSystem))
		if g.Conn, err = libvirt.ConnectToURI(u); err != nil {
			t.Fatal(err)
		}
		vmSane(t, g, cp)
		pointsIntact(t, r, g.Name, npoints)
	})

	// kill -9 of the command: its guard process undoes what the backup
	// did at once; the next backup finds nothing left to heal.
	bin := buildVmmount(t)
	for _, when := range []string{"copying", "frozen", "paused"} {
		t.Run("kill -9 while "+when, func(t *testing.T) {
			mode := ModeSnapshot
			if when == "paused" {
				mode = ModePause
			}
			killDuring(t, bin, r.Dir, g.Name, mode, when)
			deadline := time.Now().Add(60 * time.Second)
			for {
				st, _ := g.State()
				res, _ := g.Conn.QEMUDomainAgentCommand(g.Dom, `{"execute":"guest-fsfreeze-status"}`, 10, 0)
				typ, _, _, _, _, _, _, _, _, _, _, _, _ := g.Conn.DomainGetJobInfo(g.Dom)
				if st == libvirt.DomainRunning && len(res) > 0 && strings.Contains(res[0], "thawed") && typ == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after kill -9 while %s: state %d, agent %v, job %d", when, st, res, typ)
				}
				time.Sleep(50 * time.Millisecond)
			}
			pointsIntact(t, r, g.Name, npoints, true)
			res, err := Run(ctx, r, dom(ModeSnapshot), opts)
			if err != nil {
				t.Fatalf("backup after kill -9: %v", err)
			}
			npoints++
			cp = res.Point.Manifest.Disks[0].Checkpoint
			vmSane(t, g, cp)
			pointsIntact(t, r, g.Name, npoints)
		})
	}

	// kill -9 of an offline backup that shut the VM down (--shutdown):
	// the guard starts it again at once.
	t.Run("kill -9 while shut down", func(t *testing.T) {
		scratch := t.TempDir()
		_, out, _ := killBackupWhen(t, bin, []string{"--repo", r.Dir, "--mode", ModeOffline, "--shutdown", "--scratch-dir", scratch, g.Name},
			3*time.Minute, "the VM never shut down", func(int) bool {
				st, _ := g.State()
				return st == libvirt.DomainShutoff
			})
		deadline := time.Now().Add(60 * time.Second)
		for {
			if st, _ := g.State(); st == libvirt.DomainRunning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the VM was not started again after kill -9:\n%s", out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := g.WaitAgent(3 * time.Minute); err != nil {
			t.Fatal(err)
		}
		if dirs, _ := filepath.Glob(filepath.Join(scratch, scratchDirPrefix+"*")); len(dirs) != 0 {
			t.Errorf("scratch directories left: %v", dirs)
		}
		vmSane(t, g, cp)
		pointsIntact(t, r, g.Name, npoints, true)
	})
}

// startLibvirtd starts libvirtd again the way scripts/libvirt-up.sh does,
// without the script's removal of test domains (ours is running).
func startLibvirtd() error {
	log, err := os.OpenFile("/var/log/libvirt/vmmount-libvirtd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("libvirtd")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	if err := os.WriteFile("/run/vmmount-libvirt/libvirtd.pid", []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	for range 600 {
		if _, err := os.Stat(testimages.LibvirtSocket); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("libvirtd did not create %s", testimages.LibvirtSocket)
}

// buildVmmount builds the command into a temporary directory.
func buildVmmount(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vmmount")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/vmmount")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building vmmount: %v\n%s", err, out)
	}
	return bin
}

// killDuring starts `vmmount backup` of domain and kills it with SIGKILL
// at the moment when says, read from its scratch directory: "frozen"
// (filesystems frozen, job not begun), "copying" (job begun, thawed),
// "paused" (pause mode, VM paused, job begun).
func killDuring(t *testing.T, bin, repoDir, domain, mode, when string) {
	t.Helper()
	scratch := t.TempDir()
	cmd, out, err := killBackupWhen(t, bin, []string{"--repo", repoDir, "--mode", mode, "--scratch-dir", scratch, domain},
		60*time.Second, "vmmount never started its job", func(pid int) bool {
			dirs, _ := filepath.Glob(filepath.Join(scratch, scratchDirPrefix+"*"))
			if len(dirs) != 1 {
				return false
			}
			b, _ := os.ReadFile(filepath.Join(dirs[0], ownerFile))
			st, _ := readScratchState(dirs[0])
			_, sockErr := os.Stat(filepath.Join(dirs[0], socketName))
			job := sockErr == nil
			ready := map[string]bool{"frozen": st.Frozen && !job, "copying": job && !st.Frozen, "paused": job && st.Paused}
			return strings.HasPrefix(string(b), fmt.Sprintf("%d ", pid)) && ready[when]
		})
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("vmmount was not killed (%v); it finished:\n%s", err, out)
	}
}

// killBackupWhen starts `vmmount backup args...`, polls ready (given the
// process id) every millisecond, and kills the process with SIGKILL once
// ready says so. The test fails with never if that takes longer than wait,
// or if vmmount finishes first. It returns the process, its output and its
// Wait error.
func killBackupWhen(t *testing.T, bin string, args []string, wait time.Duration, never string, ready func(pid int) bool) (*exec.Cmd, string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"backup"}, args...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(wait)
	for !ready(cmd.Process.Pid) {
		select {
		case err := <-done:
			t.Fatalf("vmmount finished before it could be killed (%v):\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("%s:\n%s", never, out.String())
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := <-done
	return cmd, out.String(), err
}
