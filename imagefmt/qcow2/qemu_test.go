package qcow2

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// qemuCheck fails the test unless `qemu-img check` finds the image clean:
// no corruption, no leaked cluster, nothing it could not check.
func qemuCheck(t testing.TB, path string, extra ...string) {
	t.Helper()
	args := append(append([]string{"check", "--output=json", "-f", "qcow2"}, extra...), path)
	cmd := exec.Command("qemu-img", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res struct {
		Corruptions     int `json:"corruptions"`
		Leaks           int `json:"leaks"`
		CheckErrors     int `json:"check-errors"`
		CorruptionsFix  int `json:"corruptions-fixed"`
		ImageEndOffset  int `json:"image-end-offset"`
		AllocatedClust  int `json:"allocated-clusters"`
		CompressedClust int `json:"compressed-clusters"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("qemu-img check %s: %v (%v): %s%s", path, err, jerr, out, stderr.String())
	}
	if err != nil || res.Corruptions != 0 || res.Leaks != 0 || res.CheckErrors != 0 {
		human, _ := exec.Command("qemu-img", append(append([]string{"check", "-f", "qcow2"}, extra...), path)...).CombinedOutput()
		t.Fatalf("qemu-img check %s: %v\n%s", path, err, human)
	}
}

// qemuCompare fails the test unless qemu-img compare finds the two images
// equal (strict mode: allocation may differ, content may not).
func qemuCompare(t testing.TB, a, aFmt, b, bFmt string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "compare", "-f", aFmt, "-F", bFmt, a, b).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, out)
	}
}

// requireQemu skips without qemu-img, or fails under CI=true (as
// testimages.RequireTools does; this package's tests do not need fixtures).
func requireQemu(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and qemu-img is not installed")
		}
		t.Skip("qemu-img not installed")
	}
}
