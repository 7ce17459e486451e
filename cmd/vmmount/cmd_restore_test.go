package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/testimages"
)

// TestRestoreCommands runs restore files, disk and config through their
// run functions: output, JSON, refusals (exit 5), missing paths (exit 4),
// a damaged point (exit 3).
func TestRestoreCommands(t *testing.T) {
	testimages.RequireTools(t, "qemu-img", "mkfs.ext4", "sha256sum")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc", "nginx"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("demo\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc", "nginx", "nginx.conf"), []byte("worker_processes 1;\n"), 0o600)
	os.Symlink("/etc/hostname", filepath.Join(tree, "etc", "link"))
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", "-d", tree, disk, "32M")
	cfg := filepath.Join(dir, "demo.xml")
	os.WriteFile(cfg, []byte("<domain type='kvm'><name>demo</name><uuid>8f5b4a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b</uuid></domain>"), 0o644)

	var out, errOut bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errOut, Repo: filepath.Join(dir, "repo")}
	ctx := context.Background()
	if err := runBackup(ctx, g, &backupOptions{Name: "demo", Disks: []string{"vda=" + disk}, Config: cfg,
		Format: "qcow2", MaxChain: backup.DefaultMaxChain}, nil); err != nil {
		t.Fatalf("backup: %v\n%s", err, errOut.String())
	}

	dest := filepath.Join(dir, "dest")
	files := func(o restoreFilesOptions, args ...string) error {
		out.Reset()
		errOut.Reset()
		return runRestoreFiles(ctx, g, &o, args)
	}
	if err := files(restoreFilesOptions{To: dest}, "demo/latest", "/fs/etc"); err != nil {
		t.Fatalf("restore files: %v\n%s", err, errOut.String())
	}
	if b, err := os.ReadFile(filepath.Join(dest, "etc", "nginx", "nginx.conf")); err != nil || string(b) != "worker_processes 1;\n" {
		t.Errorf("restored nginx.conf: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dest, "etc", "link")); err != nil || l != "/etc/hostname" {
		t.Errorf("restored symlink: %q %v", l, err)
	}
	if !strings.Contains(out.String(), "3 files") && !strings.Contains(out.String(), "2 files") {
		t.Errorf("summary: %s", out.String())
	}
	if err := files(restoreFilesOptions{To: dest}, "demo/latest", "/fs/etc"); exitCode(err) != exitRefused {
		t.Errorf("restore over existing files: %v (exit %d), want exit %d", err, exitCode(err), exitRefused)
	}
	g.JSON = true
	if err := files(restoreFilesOptions{To: dest, SkipExisting: true}, "demo/latest", "/fs/etc"); err != nil {
		t.Fatal(err)
	}
	var rep filesReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Skipped != 3 || rep.Errors != 0 {
		t.Errorf("--skip-existing --json: %v %+v\n%s", err, rep.Summary, out.String())
	}
	g.JSON = false
	if err := files(restoreFilesOptions{To: dest, Overwrite: true, Parents: true}, "demo/latest", "/fs/etc/hostname"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "fs", "etc", "hostname")); err != nil {
		t.Errorf("--parents: %v", err)
	}
	// From the disk image itself.
	if err := files(restoreFilesOptions{To: filepath.Join(dir, "fromimage")}, disk, "/fs/etc/hostname"); err != nil {
		t.Fatalf("restore from an image: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "fromimage", "hostname")); string(b) != "demo\n" {
		t.Errorf("from the image: %q", b)
	}
	if err := files(restoreFilesOptions{To: dest}, "demo/latest", "/fs/nonexistent"); exitCode(err) != exitNotFound {
		t.Errorf("missing path: %v (exit %d)", err, exitCode(err))
	}
	// Tar to standard output.
	if err := files(restoreFilesOptions{Tar: "-"}, "demo/latest", "/fs/etc"); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(out.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "etc/nginx/nginx.conf") || !strings.Contains(errOut.String(), "tar -") {
		t.Errorf("tar entries %q; stderr %s", names, errOut.String())
	}

	// restore disk.
	raw := filepath.Join(dir, "vda.raw")
	out.Reset()
	if err := runRestoreDisk(ctx, g, &restoreDiskOptions{To: raw}, []string{"demo/latest", "vda"}); err != nil {
		t.Fatal(err)
	}
	if a, b := fileDigest(t, raw), fileDigest(t, disk); a != b {
		t.Errorf("restored disk differs from the one backed up")
	}
	if err := runRestoreDisk(ctx, g, &restoreDiskOptions{To: raw}, []string{"demo/latest", "vda"}); exitCode(err) != exitRefused {
		t.Errorf("existing disk target: %v", err)
	}
	if err := runRestoreDisk(ctx, g, &restoreDiskOptions{To: filepath.Join(dir, "vda.qcow2")}, []string{"demo/latest", "vda"}); err != nil {
		t.Fatal(err)
	}
	if info := testimages.MustRun(t, "qemu-img", "info", filepath.Join(dir, "vda.qcow2")); !strings.Contains(info, "file format: qcow2") {
		t.Errorf("--to *.qcow2 did not make qcow2:\n%s", info)
	}
	if err := runRestoreDisk(ctx, g, &restoreDiskOptions{To: raw}, []string{"demo/latest", "vdz"}); exitCode(err) != exitNotFound {
		t.Errorf("missing disk: %v", err)
	}

	// restore config.
	out.Reset()
	if err := runRestoreConfig(ctx, g, &restoreConfigOptions{}, []string{"demo/latest"}); err != nil || !strings.Contains(out.String(), "<name>demo</name>") {
		t.Errorf("config: %v\n%s", err, out.String())
	}
	xf := filepath.Join(dir, "out.xml")
	if err := runRestoreConfig(ctx, g, &restoreConfigOptions{To: xf, Name: "demo2"}, []string{"demo/latest"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(xf); !strings.Contains(string(b), "<name>demo2</name>") || strings.Contains(string(b), "8f5b4a3e") {
		t.Errorf("renamed config file:\n%s", b)
	}
	if err := runRestoreConfig(ctx, g, &restoreConfigOptions{To: xf}, []string{"demo/latest"}); exitCode(err) != exitRefused {
		t.Errorf("existing --to: %v", err)
	}

	// A damaged point: exit 3, nothing written.
	ents, _ := filepath.Glob(filepath.Join(dir, "repo", "demo", "2*", "vda.qcow2"))
	os.Truncate(ents[0], 4096)
	err := files(restoreFilesOptions{To: filepath.Join(dir, "never")}, "demo/latest", "/fs/etc")
	if exitCode(err) != exitBadInput {
		t.Errorf("damaged point: %v (exit %d), want %d", err, exitCode(err), exitBadInput)
	}
	if _, err := os.Stat(filepath.Join(dir, "never")); err == nil {
		t.Errorf("a damaged point's restore created its destination")
	}
}

func fileDigest(t *testing.T, name string) string {
	t.Helper()
	return strings.Fields(testimages.MustRun(t, "sha256sum", name))[0]
}
