package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/inject"
	"github.com/vmmount/vmmount/testimages"
)

// TestInjectCommand runs inject through runInject: dry run, a real run
// with --parents, --owner and --mode, a refusal (exit 5) for an existing
// name, a missing directory (exit 4), usage errors (exit 2), JSON output,
// --undo, and a restore point with --repo.
func TestInjectCommand(t *testing.T) {
	testimages.RequireRoot(t)
	testimages.RequireTools(t, "mkfs.ext4", "e2fsck", "debugfs", "cmp")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("demo\n"), 0o644)
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", "-d", tree, disk, "32M")
	orig := filepath.Join(dir, "orig.raw")
	testimages.MustRun(t, "cp", disk, orig)
	src := filepath.Join(dir, "authorized_keys")
	os.WriteFile(src, []byte("ssh-ed25519 AAAA test\n"), 0o644)

	var out, errOut bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errOut, Repo: filepath.Join(dir, "repo")}
	ctx := context.Background()
	args := []string{disk, src, "/fs/root/.ssh"}

	o := &injectOptions{Parents: true, Owner: "0:0", Mode: "600", DryRun: true}
	if err := runInject(ctx, g, o, args); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "would create /fs/root/.ssh/authorized_keys") || !strings.Contains(out.String(), "byte ranges of the disk written") {
		t.Errorf("dry run output:\n%s", out.String())
	}
	if err := exec.Command("cmp", disk, orig).Run(); err != nil {
		t.Fatal("--dry-run changed the image")
	}

	out.Reset()
	o = &injectOptions{Parents: true, Owner: "1000:1000", Mode: "0600", UndoFile: filepath.Join(dir, "keys.undo"), RestorePoint: true}
	if err := runInject(ctx, g, o, args); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"restore point disk/", "made directory /fs/root", "created /fs/root/.ssh/authorized_keys", "mode 0600, owner 1000:1000", "undo with: vmmount inject --undo " + o.UndoFile} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if b, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, b)
	}
	if b, _ := exec.Command("debugfs", "-R", "cat /root/.ssh/authorized_keys", disk).Output(); string(b) != "ssh-ed25519 AAAA test\n" {
		t.Errorf("debugfs reads %q", b)
	}

	// Exit codes.
	err := runInject(ctx, g, &injectOptions{}, args)
	if exitCode(err) != exitRefused || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("existing name: exit %d, %v", exitCode(err), err)
	}
	err = runInject(ctx, g, &injectOptions{}, []string{disk, src, "/fs/no/such"})
	if exitCode(err) != exitNotFound {
		t.Errorf("missing directory: exit %d, %v", exitCode(err), err)
	}
	for _, bad := range []*injectOptions{{Owner: "root"}, {Mode: "999"}} {
		if err := runInject(ctx, g, bad, args); exitCode(err) != exitUsage {
			t.Errorf("%+v: exit %d, %v", bad, exitCode(err), err)
		}
	}
	if err := runInject(ctx, g, &injectOptions{}, []string{disk, "relative/dir"}); exitCode(err) != exitUsage {
		t.Errorf("two arguments: exit %d, %v", exitCode(err), err)
	}

	out.Reset()
	g.JSON = true
	o = &injectOptions{Overwrite: true, UndoFile: filepath.Join(dir, "again.undo")}
	if err := runInject(ctx, g, o, args); err != nil {
		t.Fatal(err)
	}
	var res inject.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Actions) != 1 || res.Actions[0].Op != inject.ActReplace ||
		res.Actions[0].Uid != 1000 || res.Actions[0].Perm != 0o600 {
		t.Errorf("--json: %v %+v\n%s", err, res, out.String())
	}
	g.JSON = false

	for _, u := range []string{filepath.Join(dir, "again.undo"), filepath.Join(dir, "keys.undo")} {
		out.Reset()
		if err := runInject(ctx, g, &injectOptions{Undo: u}, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "it is as before the injection") {
			t.Errorf("undo output:\n%s", out.String())
		}
	}
	if err := exec.Command("cmp", disk, orig).Run(); err != nil {
		t.Fatal("the image is not as before after --undo")
	}
}
