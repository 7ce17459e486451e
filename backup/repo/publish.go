package repo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Lock is a held per-VM lock. Closing it releases it; so does the process
// dying, which is why it is an flock and not a lock file's existence.
type Lock struct {
	f *os.File
}

// LockVM takes the VM's lock without waiting: a second backup of the same VM
// fails at once with ErrLocked.
func (r *Repo) LockVM(vm string) (*Lock, error) {
	if err := CheckVMName(vm); err != nil {
		return nil, err
	}
	dir := r.VMDir(vm)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("VM %s: %w (%s)", vm, ErrLocked, strings.TrimSpace(string(holder)))
		}
		return nil, err
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d since %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// CleanPartial removes what interrupted backups of vm left behind. Call it
// with the VM's lock held.
func (r *Repo) CleanPartial(vm string) ([]string, error) {
	ents, err := os.ReadDir(r.VMDir(vm))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var removed []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, partialPrefix) || strings.HasPrefix(n, ".latest-") || strings.HasPrefix(n, ".forget-") {
			if err := os.RemoveAll(filepath.Join(r.VMDir(vm), n)); err != nil {
				return removed, err
			}
			removed = append(removed, n)
		}
	}
	return removed, nil
}

// Partial is a point being written. Write files into Dir, then Publish or
// Abort. Hold the VM's lock for its whole life.
type Partial struct {
	repo *Repo
	VM   string
	ID   string
	Dir  string
	done bool
}

// NewPartial creates the directory of a new point of vm taken at t. The id
// is unique among the VM's points.
func (r *Repo) NewPartial(vm string, t time.Time) (*Partial, error) {
	if err := CheckVMName(vm); err != nil {
		return nil, err
	}
	vmDir := r.VMDir(vm)
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		return nil, err
	}
	id := NewID(t)
	for i := 1; ; i++ {
		if _, err := os.Lstat(filepath.Join(vmDir, id)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		id = NewID(t) + "-" + strconv.Itoa(i)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	dir := filepath.Join(vmDir, partialPrefix+id+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	return &Partial{repo: r, VM: vm, ID: id, Dir: dir}, nil
}

// Path is the path of a file in the partial point.
func (p *Partial) Path(name string) string { return filepath.Join(p.Dir, name) }

// Publish writes the manifest, makes everything durable, and makes the
// point visible under its id; then it points latest at it.
func (p *Partial) Publish(m *Manifest) (*Point, error) {
	if p.done {
		return nil, errors.New("partial point already finished")
	}
	m.Schema = SchemaVersion
	m.ID = p.ID
	if m.VM.Name == "" {
		m.VM.Name = p.VM
	}
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := syncFile(filepath.Join(p.Dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	if err := writeManifest(p.Path(ManifestFile), m); err != nil {
		return nil, err
	}
	if err := syncDir(p.Dir); err != nil {
		return nil, err
	}
	vmDir := p.repo.VMDir(p.VM)
	final := filepath.Join(vmDir, p.ID)
	if err := os.Rename(p.Dir, final); err != nil {
		return nil, err
	}
	p.done = true
	if err := syncDir(vmDir); err != nil {
		return nil, err
	}
	if err := p.repo.setLatest(p.VM, p.ID); err != nil {
		return nil, err
	}
	return &Point{VM: p.VM, ID: p.ID, Dir: final, Manifest: m}, nil
}

// Abort removes the partial point. It is safe to call after Publish (it
// does nothing then), so callers can defer it.
func (p *Partial) Abort() error {
	if p.done {
		return nil
	}
	p.done = true
	return os.RemoveAll(p.Dir)
}

// setLatest points VM/latest at id atomically.
func (r *Repo) setLatest(vm, id string) error {
	vmDir := r.VMDir(vm)
	tmp := filepath.Join(vmDir, ".latest-"+id)
	os.Remove(tmp)
	if err := os.Symlink(id, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(vmDir, LatestLink)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(vmDir)
}

// refreshLatest points latest at the newest remaining point, or removes it.
func (r *Repo) refreshLatest(vm string) error {
	points, _, err := r.Points(vm)
	if err != nil {
		return err
	}
	if len(points) == 0 {
		err := os.Remove(filepath.Join(r.VMDir(vm), LatestLink))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return err
	}
	return r.setLatest(vm, points[len(points)-1].ID)
}

// Remove deletes a published point: first renamed out of sight (atomic),
// then deleted, then latest is refreshed. It does not check children; see
// Forget.
func (r *Repo) remove(p *Point) error {
	tmp := filepath.Join(r.VMDir(p.VM), ".forget-"+p.ID)
	if err := os.Rename(p.Dir, tmp); err != nil {
		return err
	}
	if err := syncDir(r.VMDir(p.VM)); err != nil {
		return err
	}
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	return r.refreshLatest(p.VM)
}
