package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFiles writes files (slash paths relative to dir → contents).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func gitT(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := git(context.Background(), dir, args...); err != nil {
		t.Fatal(err)
	}
}

func TestBumpSetsRequirementsOnWorkspaceModulesOnly(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.work":  "go 1.26.0\n\nuse (\n\t./a\n\t./b\n)\n",
		"a/go.mod": "module example.com/r/a\n\ngo 1.26.0\n",
		"b/go.mod": "module example.com/r/b\n\ngo 1.26.0\n\nrequire (\n\texample.com/r/a v0.0.0\n\texample.com/other v1.2.3\n)\n\nrequire example.com/r/a/x v0.0.0 // indirect\n\nreplace example.com/r/a => ../a\n",
	})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"bump", "-version", "v0.1.0", "-work", filepath.Join(dir, "go.work")}, &out); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "b", "go.mod"))
	want := "module example.com/r/b\n\ngo 1.26.0\n\nrequire (\n\texample.com/r/a v0.1.0\n\texample.com/other v1.2.3\n)\n\nrequire example.com/r/a/x v0.0.0 // indirect\n\nreplace example.com/r/a => ../a\n"
	if string(got) != want {
		t.Errorf("b/go.mod after bump:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(out.String(), "b/go.mod: require example.com/r/a v0.0.0 -> v0.1.0") || !strings.Contains(out.String(), "1 of 2 go.mod files changed") {
		t.Errorf("output %q does not report the change", out.String())
	}
	if err := run(context.Background(), []string{"bump", "-version", "0.1", "-work", filepath.Join(dir, "go.work")}, &out); err == nil {
		t.Error("bump to 0.1 succeeded; want an error")
	}
}

// A repository with a root LICENSE, a module with a nested module, and a module whose go.mod
// declares another path (as proto/ does).
func testRepo(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{
		"LICENSE":          "the license",
		"a/go.mod":         "module example.com/r/a\n\ngo 1.26.0\n",
		"a/a.go":           "package a\n",
		"a/sub/go.mod":     "module example.com/r/a/sub\n\ngo 1.26.0\n\nrequire example.com/r/a v1.0.0\n\nreplace example.com/r/a => ../\n",
		"a/sub/sub.go":     "package sub\n",
		"p/go.mod":         "module buf.build/gen/go/x/y\n\ngo 1.26.0\n",
		"p/p.go":           "package p\n",
		"other/readme.txt": "not a module",
	})
	gitT(t, repo, "init", "-q")
	gitT(t, repo, "add", ".")
	gitT(t, repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")
	for _, tag := range []string{"a/v1.0.0", "a/sub/v1.0.0", "p/v1.0.0"} {
		gitT(t, repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "tag", "-a", "-m", tag, tag)
	}
	return repo
}

func zipNames(t *testing.T, file string) []string {
	t.Helper()
	r, err := zip.OpenReader(file)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	for _, f := range r.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

func TestProxyServesEachTagAsTheGoCommandWould(t *testing.T) {
	repo := testRepo(t)
	proxy := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"proxy", "-repo", repo, "-out", proxy, "-prefix", "example.com/r"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// The module's own files and the root LICENSE; not the nested module's.
	if got, want := zipNames(t, filepath.Join(proxy, "example.com/r/a/@v/v1.0.0.zip")),
		[]string{"example.com/r/a@v1.0.0/LICENSE", "example.com/r/a@v1.0.0/a.go", "example.com/r/a@v1.0.0/go.mod"}; !slices.Equal(got, want) {
		t.Errorf("a's zip holds %v; want %v", got, want)
	}
	// p under the repository's path and under the path its go.mod declares.
	for _, p := range []string{"example.com/r/p", "buf.build/gen/go/x/y"} {
		if got := zipNames(t, filepath.Join(proxy, p, "@v/v1.0.0.zip")); !slices.Contains(got, p+"@v1.0.0/p.go") {
			t.Errorf("%s's zip holds %v", p, got)
		}
		if list, err := os.ReadFile(filepath.Join(proxy, p, "@v/list")); err != nil || string(list) != "v1.0.0\n" {
			t.Errorf("%s/@v/list = %q, %v", p, list, err)
		}
	}

	// The go command takes the proxy: download a module from it into a fresh module cache.
	cmd := exec.Command("go", "mod", "download", "-json", "example.com/r/a/sub@v1.0.0")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOPROXY=file://"+filepath.ToSlash(proxy), "GONOSUMDB=example.com", "GOWORK=off",
		"GOMODCACHE="+t.TempDir(), "GOFLAGS=-modcacherw")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download: %v\n%s", err, b)
	}
	var dl struct{ Dir, Error string }
	if err := json.Unmarshal(b, &dl); err != nil || dl.Error != "" {
		t.Fatalf("go mod download: %s (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(dl.Dir, "sub.go")); err != nil {
		t.Errorf("downloaded module: %v", err)
	}
}

func TestProxyFailsOnARequirementNoTagProvides(t *testing.T) {
	repo := testRepo(t)
	writeFiles(t, repo, map[string]string{"a/sub/go.mod": "module example.com/r/a/sub\n\ngo 1.26.0\n\nrequire example.com/r/a v1.1.0\n"})
	gitT(t, repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-am", "sub needs a v1.1.0")
	gitT(t, repo, "tag", "a/sub/v1.0.1")
	err := run(context.Background(), []string{"proxy", "-repo", repo, "-out", t.TempDir(), "-prefix", "example.com/r"}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "example.com/r/a/sub@v1.0.1 (tag a/sub/v1.0.1) requires example.com/r/a@v1.1.0, which no tag provides") {
		t.Fatalf("err = %v; want one naming the missing example.com/r/a@v1.1.0", err)
	}
}

func TestProxyFailsOnABadTag(t *testing.T) {
	repo := testRepo(t)
	gitT(t, repo, "tag", "other/v1.0")
	err := run(context.Background(), []string{"proxy", "-repo", repo, "-out", t.TempDir(), "-prefix", "example.com/r"}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "tag other/v1.0") {
		t.Fatalf("err = %v; want one naming tag other/v1.0", err)
	}
}
