package extwrite

import (
	"bytes"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	img := mkfsImage(t, "mkfs.ext4", nil, 64, map[string]string{"etc/hosts": "hi\n", "usr/": ""})
	f, _ := openImage(t, img)
	etc, err := lookupPath(f, "/etc")
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(300000, 1)
	if _, err := f.Create(etc, "new.bin", Attr{Perm: 0o640, Uid: 1000, Gid: 100, Mtime: testTime, Atime: testTime}, content(data)); err != nil {
		t.Fatal(err)
	}
	d, err := f.Mkdir(RootIno, "newdir", Attr{Perm: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Symlink(d, "fast", "../etc/hosts", Attr{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Symlink(d, "slow", strings.Repeat("x/", 50), Attr{}); err != nil {
		t.Fatal(err)
	}
	hosts, _ := lookupPath(f, "/etc/hosts")
	if err := f.Replace(hosts, content([]byte("127.0.0.1 localhost\n")), ReplaceAttr{}); err != nil {
		t.Fatal(err)
	}
	apply(t, f, img)
	fsck(t, img, "smoke")
	if got := debugfsCat(t, img, "/etc/new.bin"); !bytes.Equal(got, data) {
		t.Errorf("new.bin: %d bytes differ", len(got))
	}
	if got := debugfsCat(t, img, "/etc/hosts"); string(got) != "127.0.0.1 localhost\n" {
		t.Errorf("hosts: %q", got)
	}
	t.Log(debugfs(t, img, "stat /etc/new.bin"))
}
