// Command releasetool does the two Go-module chores of a Ponix release that the go command does
// not do by itself (scripts/release.sh and scripts/release-check.sh call it):
//
//	releasetool bump -version v0.1.0 [-work go.work]
//
// sets every requirement on a module of the workspace, in every go.mod of the workspace, to
// the version (replace directives are left alone: importers ignore them, local development
// keeps them);
//
//	releasetool proxy -repo DIR -out DIR [-prefix github.com/ponix-go/ponix] [-tags '*/v*']
//
// writes an on-disk Go module proxy (GOPROXY=file://DIR) of the modules of the git repository
// DIR as they are at its tags: for each tag <dir>/vX.Y.Z the module in <dir> at that tag, under
// the path <prefix>/<dir> (what a public proxy serves for the repository) and, when its go.mod
// declares another path (the proto module's buf.build path), under that path too. The zips are
// made by golang.org/x/mod/zip.CreateFromVCS, as the go command makes them from a repository:
// the module's files only, without nested modules, with the root LICENSE. It fails when a tag
// is not a canonical version, when a tagged go.mod is missing, or when a tagged module requires
// a module of the repository at a version no tag provides.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "releasetool:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  releasetool bump -version vX.Y.Z [-work go.work]
  releasetool proxy -repo DIR -out DIR [-prefix github.com/ponix-go/ponix] [-tags '*/v*']`

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch cmd, args := args[0], args[1:]; cmd {
	case "bump":
		fs := flag.NewFlagSet("bump", flag.ContinueOnError)
		version := fs.String("version", "", "the release version, vX.Y.Z")
		work := fs.String("work", "go.work", "the workspace file")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return bump(*work, *version, out)
	case "proxy":
		fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
		repo := fs.String("repo", ".", "the git repository")
		dst := fs.String("out", "", "the proxy directory to write (GOPROXY=file://DIR)")
		prefix := fs.String("prefix", "github.com/ponix-go/ponix", "the module path of the repository root")
		pattern := fs.String("tags", "*/v*", "the tags to serve (git tag -l pattern)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *dst == "" {
			return errors.New("proxy: -out is required")
		}
		return buildProxy(ctx, *repo, *dst, *prefix, *pattern, out)
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// bump sets the requirements on the workspace's own modules to version in every go.mod of the
// workspace described by workFile.
func bump(workFile, version string, out io.Writer) error {
	if !semver.IsValid(version) || semver.Canonical(version) != version {
		return fmt.Errorf("bump: version %q: want a canonical semantic version such as v0.1.0", version)
	}
	data, err := os.ReadFile(workFile)
	if err != nil {
		return fmt.Errorf("bump: %w", err)
	}
	wf, err := modfile.ParseWork(workFile, data, nil)
	if err != nil {
		return fmt.Errorf("bump: %w", err)
	}
	root := filepath.Dir(workFile)
	type modFile struct {
		file string
		mf   *modfile.File
	}
	var mods []modFile
	own := map[string]bool{}
	for _, u := range wf.Use {
		file := filepath.Join(root, filepath.FromSlash(u.Path), "go.mod")
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("bump: %w", err)
		}
		mf, err := modfile.Parse(file, data, nil)
		if err != nil {
			return fmt.Errorf("bump: %w", err)
		}
		if mf.Module == nil {
			return fmt.Errorf("bump: %s has no module line", file)
		}
		own[mf.Module.Mod.Path] = true
		mods = append(mods, modFile{file, mf})
	}
	changed := 0
	for _, m := range mods {
		var edits []string
		for _, r := range slices.Clone(m.mf.Require) {
			if own[r.Mod.Path] && r.Mod.Version != version {
				edits = append(edits, fmt.Sprintf("%s %s -> %s", r.Mod.Path, r.Mod.Version, version))
				if err := m.mf.AddRequire(r.Mod.Path, version); err != nil {
					return fmt.Errorf("bump: %s: %w", m.file, err)
				}
			}
		}
		if len(edits) == 0 {
			continue
		}
		m.mf.Cleanup()
		data, err := m.mf.Format()
		if err != nil {
			return fmt.Errorf("bump: %s: %w", m.file, err)
		}
		if err := os.WriteFile(m.file, data, 0o644); err != nil {
			return fmt.Errorf("bump: %w", err)
		}
		changed++
		rel, _ := filepath.Rel(root, m.file)
		for _, e := range edits {
			fmt.Fprintf(out, "%s: require %s\n", rel, e)
		}
	}
	fmt.Fprintf(out, "%d of %d go.mod files changed\n", changed, len(mods))
	return nil
}

// served is one module version of the proxy.
type served struct {
	path, version string
	tag, dir      string
	gomod         []byte
}

// buildProxy writes the proxy of repo's tagged modules to dst.
func buildProxy(ctx context.Context, repo, dst, prefix, pattern string, out io.Writer) error {
	repo, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	tagList, err := git(ctx, repo, "tag", "-l", pattern)
	if err != nil {
		return err
	}
	tags := strings.Fields(tagList)
	if len(tags) == 0 {
		return fmt.Errorf("proxy: %s has no tags matching %q: tag the modules first (scripts/release.sh VERSION --tag)", repo, pattern)
	}
	var (
		all  []served
		errs []error
	)
	for _, tag := range tags {
		mods, err := tagged(ctx, repo, prefix, tag)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, mods...)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := checkRequirements(all, prefix); err != nil {
		return err
	}
	versions := map[string][]string{}
	for _, s := range all {
		if err := write(ctx, repo, dst, s); err != nil {
			return err
		}
		versions[s.path] = append(versions[s.path], s.version)
		fmt.Fprintf(out, "proxy: %s@%s from tag %s\n", s.path, s.version, s.tag)
	}
	for p, vs := range versions {
		semver.Sort(vs)
		dir, err := versionDir(dst, p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "list"), []byte(strings.Join(vs, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// tagged reads the module of one tag <dir>/<version>: served under <prefix>/<dir>, and also
// under the path its go.mod declares when that differs.
func tagged(ctx context.Context, repo, prefix, tag string) ([]served, error) {
	i := strings.LastIndex(tag, "/")
	if i <= 0 {
		return nil, fmt.Errorf("tag %s: want <module directory>/vX.Y.Z", tag)
	}
	dir, version := tag[:i], tag[i+1:]
	if !semver.IsValid(version) || semver.Canonical(version) != version {
		return nil, fmt.Errorf("tag %s: %q is not a canonical semantic version (vX.Y.Z)", tag, version)
	}
	gomod, err := git(ctx, repo, "show", tag+":"+dir+"/go.mod")
	if err != nil {
		return nil, fmt.Errorf("tag %s: no go.mod in %s at this tag: %w", tag, dir, err)
	}
	declared := modfile.ModulePath([]byte(gomod))
	if declared == "" {
		return nil, fmt.Errorf("tag %s: %s/go.mod has no module line", tag, dir)
	}
	s := served{path: prefix + "/" + dir, version: version, tag: tag, dir: dir, gomod: []byte(gomod)}
	if err := module.Check(s.path, version); err != nil {
		return nil, fmt.Errorf("tag %s: %w", tag, err)
	}
	mods := []served{s}
	if declared != s.path {
		if err := module.Check(declared, version); err != nil {
			return nil, fmt.Errorf("tag %s: %w", tag, err)
		}
		s.path = declared
		mods = append(mods, s)
	}
	return mods, nil
}

// checkRequirements fails when a served module requires a module of the repository (a path
// under prefix, or one the proxy serves) at a version the proxy does not have: an importer
// could not resolve it.
func checkRequirements(all []served, prefix string) error {
	have := map[module.Version]bool{}
	paths := map[string]bool{}
	for _, s := range all {
		have[module.Version{Path: s.path, Version: s.version}] = true
		paths[s.path] = true
	}
	var errs []error
	for _, s := range all {
		mf, err := modfile.ParseLax(s.tag+":go.mod", s.gomod, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range mf.Require {
			ours := paths[r.Mod.Path] || strings.HasPrefix(r.Mod.Path, prefix+"/")
			if ours && !have[r.Mod] {
				errs = append(errs, fmt.Errorf("%s@%s (tag %s) requires %s@%s, which no tag provides", s.path, s.version, s.tag, r.Mod.Path, r.Mod.Version))
			}
		}
	}
	return errors.Join(errs...)
}

// write writes the .mod, .info and .zip files of one module version.
func write(ctx context.Context, repo, dst string, s served) error {
	dir, err := versionDir(dst, s.path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	when, err := git(ctx, repo, "log", "-1", "--format=%cI", s.tag)
	if err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(when))
	if err != nil {
		return fmt.Errorf("tag %s: commit time %q: %w", s.tag, when, err)
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{s.version, t.UTC()})
	if err != nil {
		return err
	}
	ev, err := module.EscapeVersion(s.version)
	if err != nil {
		return err
	}
	base := filepath.Join(dir, ev)
	if err := os.WriteFile(base+".info", info, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(base+".mod", s.gomod, 0o644); err != nil {
		return err
	}
	var zip bytes.Buffer
	if err := modzip.CreateFromVCS(&zip, module.Version{Path: s.path, Version: s.version}, repo, s.tag, s.dir); err != nil {
		return fmt.Errorf("tag %s: module zip of %s: %w", s.tag, s.path, err)
	}
	return os.WriteFile(base+".zip", zip.Bytes(), 0o644)
}

// versionDir is <dst>/<escaped module path>/@v.
func versionDir(dst, modPath string) (string, error) {
	ep, err := module.EscapePath(modPath)
	if err != nil {
		return "", err
	}
	return filepath.Join(dst, filepath.FromSlash(path.Join(ep, "@v"))), nil
}

// git runs git in repo and returns its standard output.
func git(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
