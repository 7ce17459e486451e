package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/fsread"
	"github.com/vmmount/vmmount/mount"
)

// mountSource is what `mount` and `shell` serve: a tree and what to close
// once it is unmounted.
type mountSource struct {
	root *mount.Dir
	desc string

	mu      sync.Mutex
	closers []func() error
}

func (m *mountSource) onClose(f func() error) {
	m.mu.Lock()
	m.closers = append(m.closers, f)
	m.mu.Unlock()
}

func (m *mountSource) Close() {
	m.mu.Lock()
	cs := m.closers
	m.closers = nil
	m.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// isRepoDir says whether dir is a repository.
func isRepoDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, repo.MarkerFile))
	return err == nil
}

// openMountSource turns SOURCE arguments into a tree:
//   - a repository directory: <vm>/<point>/... with a latest link per VM;
//   - VM or VM/ID or VM/latest: that VM's points, or one point, from --repo;
//   - otherwise image files, the disks of one VM.
//
// Only headers are read here; filesystems open when first listed.
func openMountSource(ctx context.Context, g *globalOptions, sources []string, format, mountRoot string) (*mountSource, error) {
	m := &mountSource{}
	now := time.Now()
	switch {
	case len(sources) == 1 && isRepoDir(sources[0]):
		r, err := repo.Open(sources[0])
		if err != nil {
			return nil, err
		}
		m.root = repoTree(ctx, m, r, mountRoot, now)
		m.desc = "repository " + sources[0]
		return m, nil
	case len(sources) == 1 && !isHostFile(sources[0]) && !strings.HasPrefix(sources[0], "/") && !strings.HasPrefix(sources[0], "."):
		r, err := repo.Open(g.Repo)
		if err != nil {
			return nil, fmt.Errorf("%s is neither an image file nor a restore point: %w", sources[0], err)
		}
		ref := strings.TrimSuffix(sources[0], "/")
		if !strings.Contains(ref, "/") {
			if _, _, err := r.Points(ref); err != nil {
				return nil, err
			}
			m.root = vmTree(ctx, m, r, ref, mountRoot, now)
			m.desc = "VM " + ref + " of repository " + r.Dir
			return m, nil
		}
		p, err := r.Point(ref)
		if err != nil {
			return nil, err
		}
		root, err := pointTree(ctx, m, p, mountRoot, now)
		if err != nil {
			return nil, err
		}
		m.root = root
		m.desc = "restore point " + p.Ref()
		return m, nil
	}
	s, err := openImageSetWith(ctx, sources, format, fsread.Options{MountRoot: mountRoot})
	if err != nil {
		return nil, err
	}
	m.onClose(func() error { s.Close(); return nil })
	imgs := make([]fsread.Image, len(s.images))
	for i, img := range s.images {
		imgs[i] = img
	}
	m.root = mount.SetTree(s.set, imgs, now)
	m.desc = strings.Join(sources, " ")
	return m, nil
}

// repoTree lists the VMs of a repository.
func repoTree(ctx context.Context, m *mountSource, r *repo.Repo, mountRoot string, now time.Time) *mount.Dir {
	return &mount.Dir{Mtime: now, List: func() ([]mount.Entry, error) {
		vms, err := r.VMs()
		if err != nil {
			return nil, err
		}
		var out []mount.Entry
		for _, vm := range vms {
			out = append(out, mount.Entry{Name: vm, Node: vmTree(ctx, m, r, vm, filepath.Join(mountRoot, vm), now)})
		}
		return out, nil
	}}
}

// vmTree lists a VM's points and the latest link.
func vmTree(ctx context.Context, m *mountSource, r *repo.Repo, vm, mountRoot string, now time.Time) *mount.Dir {
	return &mount.Dir{Mtime: now, List: func() ([]mount.Entry, error) {
		points, _, err := r.Points(vm)
		if err != nil {
			return nil, err
		}
		var out []mount.Entry
		for _, p := range points {
			p := p
			pdir := &mount.Dir{Mtime: p.Manifest.Time, List: func() ([]mount.Entry, error) {
				t, err := pointTree(ctx, m, p, filepath.Join(mountRoot, p.ID), now)
				if err != nil {
					return nil, err
				}
				return t.Entries, nil
			}}
			out = append(out, mount.Entry{Name: p.ID, Node: pdir})
		}
		if n := len(points); n > 0 {
			out = append(out, mount.Entry{Name: repo.LatestLink, Node: &mount.Symlink{Target: points[n-1].ID, Mtime: points[n-1].Manifest.Time}})
		}
		return out, nil
	}}
}

// pointTree opens a point: its disks' namespace, the VM configuration and
// the manifest beside them.
func pointTree(ctx context.Context, m *mountSource, p *repo.Point, mountRoot string, now time.Time) (*mount.Dir, error) {
	op, err := repo.OpenPoint(ctx, p, fsread.Options{MountRoot: mountRoot})
	if err != nil {
		return nil, err
	}
	m.onClose(op.Close)
	mt := p.Manifest.Time
	if mt.IsZero() {
		mt = now
	}
	root := mount.SetTree(op.Set, op.FSImages(), mt)
	extra := []string{repo.ManifestFile}
	c := p.Manifest.Config
	for _, name := range []string{c.DomainXML, c.NVRAM, c.Kernel, c.Initrd} {
		if name != "" {
			extra = append(extra, name)
		}
	}
	for _, name := range extra {
		f, err := os.Open(p.Path(name))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		m.onClose(f.Close)
		root.Entries = append(root.Entries, mount.Entry{Name: name, Node: &mount.RawFile{R: f, Size: st.Size(), Mtime: mt}})
	}
	return root, nil
}
