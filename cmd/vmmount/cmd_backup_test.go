package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/backup"
	"github.com/vmmount/vmmount/backup/repo"
	"github.com/vmmount/vmmount/testimages"
)

// TestBackupCommands runs backup (image files), list, verify, prune and
// forget through their run functions, with their text and JSON output and
// exit codes.
func TestBackupCommands(t *testing.T) {
	testimages.RequireTools(t, "qemu-img", "mkfs.ext4")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("demo\n"), 0o644)
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", "-d", tree, disk, "32M")
	cfg := filepath.Join(dir, "demo.xml")
	os.WriteFile(cfg, []byte("<domain type='kvm'><name>demo</name></domain>"), 0o644)

	var out, errOut bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errOut, Repo: filepath.Join(dir, "repo")}
	ctx := context.Background()
	bo := func() *backupOptions {
		return &backupOptions{Name: "demo", Disks: []string{"vda=" + disk}, Config: cfg, Format: "qcow2", MaxChain: backup.DefaultMaxChain}
	}
	for i := range 3 {
		out.Reset()
		o := bo()
		if i == 1 {
			o.Compress = "zstd"
		}
		if err := runBackup(ctx, g, o, nil); err != nil {
			t.Fatalf("backup %d: %v\n%s", i, err, errOut.String())
		}
		if !strings.Contains(out.String(), "demo/") || !strings.Contains(out.String(), "vda:") {
			t.Errorf("backup output:\n%s", out.String())
		}
	}

	out.Reset()
	g.JSON = true
	if err := runList(ctx, g, &listOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	var list []listEntry
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list) != 3 {
		t.Fatalf("list --json: %v\n%s", err, out.String())
	}
	if list[0].Parent != "" || list[1].Parent != list[0].ID || list[2].Parent != list[1].ID ||
		list[0].VirtualSize != 32<<20 || list[0].StoredBytes <= 0 || list[0].Mode != "images" {
		t.Errorf("list: %+v", list)
	}
	g.JSON = false
	out.Reset()
	if err := runList(ctx, g, &listOptions{}, []string{"demo"}); err != nil || !strings.Contains(out.String(), "POINT") || strings.Count(out.String(), "demo/") != 3 {
		t.Errorf("list text: %v\n%s", err, out.String())
	}

	out.Reset()
	if err := runVerify(ctx, g, &verifyOptions{}, []string{"demo/latest"}); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if strings.Count(out.String(), ": ok") != 3 || !strings.Contains(out.String(), "/fs ext4") {
		t.Errorf("verify output:\n%s", out.String())
	}

	// forget refuses a parent (exit 5), prune --dry-run says what it would do.
	err := runForget(ctx, g, &forgetOptions{}, []string{"demo/" + list[0].ID})
	if exitCode(err) != exitRefused {
		t.Errorf("forget of a parent: %v (exit %d)", err, exitCode(err))
	}
	out.Reset()
	g.JSON = true
	if err := runPrune(ctx, g, &pruneOptions{DryRun: true, Policy: policyLast(1)}, nil); err != nil {
		t.Fatal(err)
	}
	var pr []backup.PruneResult
	if err := json.Unmarshal(out.Bytes(), &pr); err != nil || len(pr) != 1 || len(pr[0].Merges) != 2 {
		t.Fatalf("prune --dry-run --json: %v\n%s", err, out.String())
	}
	g.JSON = false
	out.Reset()
	if err := runPrune(ctx, g, &pruneOptions{Policy: policyLast(1)}, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "merged demo/") {
		t.Errorf("prune output:\n%s", out.String())
	}
	out.Reset()
	if err := runVerify(ctx, g, &verifyOptions{}, nil); err != nil {
		t.Fatalf("verify after prune: %v\n%s", err, out.String())
	}

	// A damaged point fails verify with exit code 3.
	latest := list[2]
	os.Truncate(filepath.Join(latest.Path, "vda.qcow2"), 1<<20)
	out.Reset()
	err = runVerify(ctx, g, &verifyOptions{NoFS: true}, nil)
	if exitCode(err) != exitBadInput || !strings.Contains(out.String(), "FAILED") {
		t.Errorf("verify of a damaged point: %v (exit %d)\n%s", err, exitCode(err), out.String())
	}

	// Usage errors.
	for _, o := range []*backupOptions{
		{Name: "demo", MaxChain: 1, Format: "qcow2"},
		{Name: "demo", Disks: []string{"vda"}, MaxChain: 1, Format: "qcow2"},
		{Name: "demo", Disks: []string{"vda=" + disk}, MaxChain: 1, Format: "raw", Compress: "zstd"},
	} {
		if err := runBackup(ctx, g, o, nil); exitCode(err) != exitUsage {
			t.Errorf("backup %+v: %v, want a usage error", o, err)
		}
	}
}

func policyLast(n int) repo.Policy { return repo.Policy{Last: n} }
