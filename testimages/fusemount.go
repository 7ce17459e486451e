package testimages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// FuseMount runs a FUSE filesystem daemon in the foreground (fuse2fs -f,
// ntfs-3g -o no_detach), whose arguments include the mount point dir, and
// returns once dir is mounted. The returned function unmounts and waits for
// the daemon to exit, so an image written through the mount is complete
// when it returns (a FUSE unmount alone returns before the daemon has
// flushed).
func FuseMount(dir, name string, args ...string) (func() error, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mounted, err := isMountPoint(dir)
		if err != nil {
			cmd.Process.Kill()
			<-exited
			return nil, err
		}
		if mounted {
			break
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s %s exited before mounting: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("%s did not mount %s within a minute: %s", name, dir, stderr.String())
		}
	}
	return func() error {
		_, uerr := Run("umount", dir)
		if uerr != nil {
			Run("umount", "-l", dir)
		}
		select {
		case err := <-exited:
			if err != nil && uerr == nil {
				return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
			}
		case <-time.After(5 * time.Minute):
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s did not exit after unmounting %s", name, dir)
		}
		return uerr
	}, nil
}

// isMountPoint reports whether dir is listed in /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the octal escapes of spaces and tabs
// (proc(5), /proc/pid/mountinfo).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
