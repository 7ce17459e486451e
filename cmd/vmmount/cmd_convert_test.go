package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func requireQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and qemu-img is not installed")
		}
		t.Skip("qemu-img not installed")
	}
}

func TestRunConvert(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	data := bytes.Repeat([]byte("vmmount convert test "), 200000)
	data = append(data, make([]byte, 3<<20)...) // a zero tail
	data = append(data, bytes.Repeat([]byte{0xa5}, 1<<20)...)
	data = data[:len(data)/512*512]
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errOut}
	ctx := context.Background()

	dst := filepath.Join(dir, "out.qcow2")
	if err := runConvert(ctx, g, &convertOptions{OutFormat: "qcow2", Compression: "zstd", ClusterSize: "4K"}, []string{src, dst}); err != nil {
		t.Fatal(err)
	}
	mustQemu(t, "check", dst)
	mustQemu(t, "compare", "-f", "qcow2", "-F", "raw", dst, src)
	if info := mustQemu(t, "info", dst); !bytes.Contains([]byte(info), []byte("cluster_size: 4096")) || !bytes.Contains([]byte(info), []byte("compression type: zstd")) {
		t.Errorf("qemu-img info:\n%s", info)
	}

	// An existing DST is refused (exit code 5), replaced with --force.
	err := runConvert(ctx, g, &convertOptions{OutFormat: "raw"}, []string{src, dst})
	var re refusedError
	if !errors.As(err, &re) || exitCode(err) != exitRefused {
		t.Fatalf("convert over an existing file: %v", err)
	}
	out.Reset()
	g.JSON = true
	if err := runConvert(ctx, g, &convertOptions{OutFormat: "raw", Force: true}, []string{src, dst}); err != nil {
		t.Fatal(err)
	}
	var rep convertReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Format != "raw" || rep.VirtualSize != int64(len(data)) {
		t.Errorf("--json report %+v (%v): %s", rep, err, out.Bytes())
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("raw output differs from the source (%v)", err)
	}

	// Overlay with a relative backing name.
	ovl := filepath.Join(dir, "ovl.qcow2")
	if err := runConvert(ctx, g, &convertOptions{OutFormat: "qcow2", Backing: "src.raw", BackingFormat: "raw"}, []string{dst, ovl}); err != nil {
		t.Fatal(err)
	}
	mustQemu(t, "check", ovl)
	mustQemu(t, "compare", ovl, src)

	for _, o := range []convertOptions{
		{OutFormat: "vmdk"}, {OutFormat: "qcow2", Compression: "lz4"},
		{OutFormat: "qcow2", ClusterSize: "3000"}, {OutFormat: "raw", Compression: "zstd"},
		{OutFormat: "qcow2", BackingFormat: "raw"},
	} {
		if err := runConvert(ctx, g, &o, []string{src, filepath.Join(dir, "bad")}); exitCode(err) != exitUsage {
			t.Errorf("%+v: got %v, want a usage error", o, err)
		}
	}
	if err := runConvert(ctx, g, &convertOptions{OutFormat: "qcow2"}, []string{filepath.Join(dir, "missing"), filepath.Join(dir, "x")}); exitCode(err) != exitNotFound {
		t.Errorf("missing source: got %v", err)
	}

	// Interrupted: nothing left behind.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := runConvert(cctx, g, &convertOptions{OutFormat: "qcow2"}, []string{src, filepath.Join(dir, "int.qcow2")}); exitCode(err) != exitInterrupted {
		t.Errorf("cancelled convert: got %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("directory holds %d entries, want src, out and ovl", len(ents))
	}
}

func mustQemu(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "64K": 64 << 10, "64k": 64 << 10, "2M": 2 << 20, "2MiB": 2 << 20, "1G": 1 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}
