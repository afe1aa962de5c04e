package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// markdownLink matches the target of an inline markdown link or image.
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// outsidePath matches a relative path written in prose that climbs up
// (`../notes/DESIGN.md`); it must stay inside the repository and exist.
var outsidePath = regexp.MustCompile("(?:^|[\\s`(\"'])((?:\\.\\./)+[A-Za-z0-9_.-][^\\s`)\"']*)")

// docFiles are the README and every markdown file under docs/.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// linkProblems returns what is wrong with the links in one markdown file
// at path (relative to root): a link or a path that leaves the repository,
// an absolute file path, or a relative link to a file that does not exist.
// Web links (https://…) and in-page anchors are not checked here.
func linkProblems(root, path string, text string) []string {
	var out []string
	dir := filepath.Dir(filepath.Join(root, path))
	inside := func(target string) (string, bool) {
		abs := filepath.Clean(filepath.Join(dir, target))
		rel, err := filepath.Rel(root, abs)
		return abs, err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	for _, m := range markdownLink.FindAllStringSubmatch(text, -1) {
		target := m[1]
		switch {
		case strings.HasPrefix(target, "#"), strings.Contains(target, "://"), strings.HasPrefix(target, "mailto:"):
			continue
		case strings.HasPrefix(target, "/"):
			out = append(out, "absolute link "+target)
			continue
		}
		file, _, _ := strings.Cut(target, "#")
		abs, ok := inside(file)
		if !ok {
			out = append(out, "link outside the repository: "+target)
			continue
		}
		if _, err := os.Stat(abs); err != nil {
			out = append(out, "link to a missing file: "+target)
		}
	}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range outsidePath.FindAllStringSubmatch(line, -1) {
			abs, ok := inside(m[1])
			if !ok {
				out = append(out, "path outside the repository: "+m[1])
			} else if _, err := os.Stat(abs); err != nil {
				out = append(out, "path to a missing file: "+m[1])
			}
		}
	}
	return out
}

// TestDocsLinkOnlyInsideTheRepository keeps the README and docs/ readable
// from a clone alone: every link and every relative path they mention
// stays inside the repository, and every linked file exists.
func TestDocsLinkOnlyInsideTheRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range docFiles(t, root) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, p := range linkProblems(root, rel, string(b)) {
			t.Errorf("%s: %s", rel, p)
		}
	}
}

// TestLinkCheckCatchesOutsideLinks is the check's own attack test: a link
// to a design page beside the repository is caught, in a link or in prose,
// as are absolute paths and missing files.
func TestLinkCheckCatchesOutsideLinks(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"README.md": "See [the design](../notes/DESIGN.md).",
		"docs/a.md": "See [x](../../other/README.md).",
		"docs/b.md": "The map is in `../notes/DESIGN.md`.",
		"docs/c.md": "See [y](/etc/passwd).",
		"docs/d.md": "See [z](no-such-page.md).",
		"docs/e.md": "Read ../notes/STYLE.md first.",
	}
	for path, text := range bad {
		if len(linkProblems(root, path, text)) == 0 {
			t.Errorf("%s: %q passed the link check", path, text)
		}
	}
	good := map[string]string{
		"README.md": "See [the design](docs/design.md) and [api](docs/api-messaging.md#notices), https://example.org/x.",
		"docs/a.md": "Vectors: [n](../messaging/testdata/notices.json), [here](#top).",
	}
	for path, text := range good {
		if p := linkProblems(root, path, text); len(p) != 0 {
			t.Errorf("%s: %q: %v", path, text, p)
		}
	}
}
