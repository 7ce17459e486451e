package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

func qcow2Fixture(t *testing.T, name string) testimages.Qcow2Fixture {
	t.Helper()
	for _, fx := range testimages.Qcow2Fixtures(t) {
		if fx.Name == name {
			return fx
		}
	}
	t.Fatalf("no qcow2 fixture %q", name)
	return testimages.Qcow2Fixture{}
}

// TestRunInfoChain runs `vmmount info` on a three-deep qcow2 chain, as
// text and as JSON, and checks what it reports against qemu-img.
func TestRunInfoChain(t *testing.T) {
	fx := qcow2Fixture(t, "chain3")
	var out, errOut bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errOut}
	if err := runInfo(context.Background(), g, &infoOptions{}, []string{fx.Path}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"image: " + fx.Path + "\n",
		"format: qcow2 v3\n",
		"virtual size: 16.0 MiB (16777216 bytes)\n",
		"cluster size: 65536\n",
		"\n  image: ",
		"  backing file: ../base.qcow2 (qcow2)\n",
		"\n    image: ",
		"allocated in guest (whole chain): ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("info output lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "backing file: "); n != 2 {
		t.Errorf("%d backing file lines, want 2:\n%s", n, text)
	}

	// JSON: the chain nests, and the guest bytes allocated are what
	// qemu-img map reports as data.
	out.Reset()
	g.JSON = true
	if err := runInfo(context.Background(), g, &infoOptions{}, []string{fx.Path}); err != nil {
		t.Fatal(err)
	}
	type layer struct {
		Filename        string `json:"filename"`
		Format          string `json:"format"`
		BackingFilename string `json:"backing_filename"`
		BackingFormat   string `json:"backing_format"`
		ClusterSize     int64  `json:"cluster_size"`
		Backing         *layer `json:"backing"`
	}
	var rep struct {
		layer
		AllocatedVirtual int64 `json:"allocated_virtual_bytes"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	depth := 0
	for l := &rep.layer; l.Backing != nil; l = l.Backing {
		if l.BackingFormat != "qcow2" || l.Backing.Filename == "" || l.Backing.ClusterSize != 65536 {
			t.Errorf("layer %d: %+v", depth, *l)
		}
		depth++
	}
	if depth != 2 {
		t.Errorf("JSON chain of depth %d, want 2", depth)
	}
	m, err := testimages.ReadQemuMapJSON(fx.Map)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, e := range m {
		if e.Present && e.Data {
			data += e.Length
		}
	}
	if rep.AllocatedVirtual != data {
		t.Errorf("allocated_virtual_bytes = %d, qemu-img map says %d", rep.AllocatedVirtual, data)
	}
}

func TestRunInfoSnapshotsAndBitmaps(t *testing.T) {
	var out bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &out}
	err := runInfo(context.Background(), g, &infoOptions{},
		[]string{qcow2Fixture(t, "snapshots").Path, qcow2Fixture(t, "extl2-solo").Path})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`snapshot: 1 "first"`, `snapshot: 2 "second snapshot"`, "subcluster size: 512\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("info output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	g.JSON = true
	if err := runInfo(context.Background(), g, &infoOptions{}, []string{qcow2Fixture(t, "bitmaps").Path}); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Bitmaps []string `json:"bitmaps"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || strings.Join(rep.Bitmaps, ",") != "daily,weekly-backup" {
		t.Errorf("bitmaps %v, %v:\n%s", rep.Bitmaps, err, out.String())
	}
}

// TestRunInfoBadImages: refused and broken images exit with the bad-input
// code, absent ones with not-found, and the message says why.
func TestRunInfoBadImages(t *testing.T) {
	testimages.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if _, err := testimages.RunIn(dir, nil, "qemu-img", args...); err != nil {
			t.Fatal(err)
		}
	}
	run("create", "-q", "-f", "qcow2", "base.qcow2", "1M")
	run("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "orphan.qcow2")
	run("create", "-q", "-f", "qcow2", "-b", "orphan.qcow2", "-F", "qcow2", "loop.qcow2")
	run("rebase", "-u", "-b", "loop.qcow2", "-F", "qcow2", "orphan.qcow2")
	run("create", "-q", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", "-u", "missing.qcow2", "1M")

	for _, tc := range []struct {
		image string
		code  int
		msg   string
	}{
		{testimages.Qcow2Encrypted(t), exitBadInput, "encrypted qcow2 image (LUKS)"},
		{filepath.Join(dir, "loop.qcow2"), exitBadInput, "backing chain"},
		{filepath.Join(dir, "missing.qcow2"), exitBadInput, "gone.qcow2"},
		{filepath.Join(dir, "absent.qcow2"), exitNotFound, "absent.qcow2"},
	} {
		var out bytes.Buffer
		g := &globalOptions{stdout: &out, stderr: &out}
		err := runInfo(context.Background(), g, &infoOptions{}, []string{tc.image})
		if exitCode(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("info %s: exit %d, %v; want exit %d and %q", filepath.Base(tc.image), exitCode(err), err, tc.code, tc.msg)
		}
	}
}
