// Package doccheck reads what the documentation promises, for the tests
// that hold the code to it: the configuration tables of the README.
package doccheck

import (
	"regexp"
	"strings"
)

// Documented is one variable a configuration table names.
type Documented struct {
	// Var is the variable's full name.
	Var string
	// Default is the default column's text for the variable ("`500ms`",
	// "none"), when the table has a row for it; "" when it is only named
	// in another row's meaning.
	Default string
}

// tableHeader starts a configuration table.
const tableHeader = "| variable | default | meaning |"

var codeSpan = regexp.MustCompile("`(SUPPRESSD_[A-Z0-9_]+|_[A-Z0-9_]+)`")

// ConfigTables returns the variables of markdown's configuration tables,
// the ones headed "| variable | default | meaning |", in order, expanding
// the tables' shorthand: in a row starting `SUPPRESSD_REDIS_DIAL_TIMEOUT`,
// "`_READ_TIMEOUT`" is SUPPRESSD_REDIS_READ_TIMEOUT. A row naming several
// variables gives each its part of a default cell written "`2s` / `1s`",
// or the whole cell.
func ConfigTables(markdown string) []Documented {
	var out []Documented
	seen := map[string]int{} // index in out
	add := func(d Documented) {
		if i, ok := seen[d.Var]; ok {
			if out[i].Default == "" {
				out[i].Default = d.Default
			}
			return
		}
		seen[d.Var] = len(out)
		out = append(out, d)
	}
	inTable := false
	for _, line := range strings.Split(markdown, "\n") {
		if strings.HasPrefix(line, tableHeader) {
			inTable = true
			continue
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
		}
		if !inTable || strings.HasPrefix(line, "| ---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) < 3 {
			continue
		}
		section := ""
		expand := func(cell string) []string {
			var vars []string
			for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
				v := m[1]
				if strings.HasPrefix(v, "SUPPRESSD_") {
					if section == "" {
						section = "SUPPRESSD_" + strings.SplitN(strings.TrimPrefix(v, "SUPPRESSD_"), "_", 2)[0]
					}
				} else {
					v = section + v
				}
				vars = append(vars, v)
			}
			return vars
		}
		named := expand(cells[0])
		defaults := strings.Split(cells[1], " / ")
		for i, v := range named {
			d := Documented{Var: v, Default: strings.TrimSpace(cells[1])}
			if len(defaults) == len(named) {
				d.Default = strings.TrimSpace(defaults[i])
			}
			add(d)
		}
		for _, v := range expand(strings.Join(cells[2:], " | ")) {
			add(Documented{Var: v})
		}
	}
	return out
}
