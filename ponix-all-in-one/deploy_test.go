package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deployDir is the repository's deploy/ folder: alert rules, dashboard, tested queries.
var deployDir = filepath.Join("..", "deploy")

// testedQueries reads deploy/prometheus/queries.yml: name → PromQL expression.
func testedQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "queries.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Queries map[string]string `yaml:"queries"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Queries) == 0 {
		t.Fatal("no queries in deploy/prometheus/queries.yml")
	}
	return f.Queries
}

// dashboardExprs reads the PromQL expressions of every panel of the dashboard, by panel title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "dashboards", "ponix.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	return out
}

// Every panel query of the dashboard is one of the tested set, verbatim, and every query of
// the set is on the dashboard (the set is not stale).
func TestDashboardQueriesAreTheTestedSet(t *testing.T) {
	queries := testedQueries(t)
	tested := map[string]string{}
	for name, q := range queries {
		tested[q] = name
	}
	used := map[string]bool{}
	panels := dashboardExprs(t)
	for title, exprs := range panels {
		for _, e := range exprs {
			name, ok := tested[e]
			if !ok {
				t.Errorf("panel %q queries %q, which is not in deploy/prometheus/queries.yml", title, e)
			}
			used[name] = true
		}
	}
	var unused []string
	for name := range queries {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("queries on no panel: %v", unused)
	}
	if len(panels) < 8 {
		t.Errorf("%d panels, want the dashboard's 11", len(panels))
	}
}
