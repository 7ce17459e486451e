package testimages

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Root is the cache directory.
func Root() string {
	if d := os.Getenv("VMMOUNT_TESTIMAGES"); d != "" {
		return d
	}
	return "/var/tmp/vmmount-testimages"
}

// InCI reports whether tests run under CI=true, where a missing tool or
// device is a failure, never a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Cached returns the directory of fixture name at recipe version, calling
// build on an empty directory to make it the first time. Bump version when a
// recipe changes. Builds of the same fixture by concurrent processes are
// serialized with a lock file; a failed build leaves nothing behind.
func Cached(name, version string, build func(dir string) error) (string, error) {
	root := Root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(root, name+"-"+version)
	if _, err := os.Stat(filepath.Join(final, ".done")); err == nil {
		return final, nil
	}
	lock, err := os.OpenFile(filepath.Join(root, name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(final, ".done")); err == nil {
		return final, nil
	}
	os.RemoveAll(final)
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if err := build(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("building test image %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".done"), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}

// Get is Cached for tests: it fails the test on error.
func Get(t testing.TB, name, version string, build func(dir string) error) string {
	t.Helper()
	dir, err := Cached(name, version, build)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// RequireTools skips the test when a tool is missing, or fails it under CI.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, "tool %s not installed (make setup installs it)", tool)
		}
	}
}

// RequireRoot skips (or fails under CI) a test that needs root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// Missing reports a missing prerequisite: a skip, or a failure under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skip(msg)
}

// Run runs a command and returns its standard output; the error carries the
// command line and its standard error.
func Run(name string, args ...string) (string, error) {
	return RunIn("", nil, name, args...)
}

// RunIn runs a command in dir with extra environment variables.
func RunIn(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustRun is Run for tests.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
