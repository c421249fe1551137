package main

import (
	"flag"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// toolCommands are the binary's commands that take flags, as typed.
var toolCommands = [][]string{
	{"snapshot", "save"},
	{"snapshot", "restore", "FILE"},
	{"export"},
	{"import"},
	{"check"},
	{"compact"},
	{"status"},
}

// flagLine matches a flag in the output of flag.PrintDefaults.
var flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// TestEveryFlagDocumented: every flag the server and every tool register
// appears as --flag in docs/OPERATIONS.md, so the page stays true as flags
// are added.
func TestEveryFlagDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	documented := func(name string) bool {
		// --name followed by something that cannot continue a flag name.
		return regexp.MustCompile(`--` + regexp.QuoteMeta(name) + `([^a-z0-9-]|$)`).MatchString(text)
	}
	var missing []string
	newFlags("metastore").fs.VisitAll(func(fl *flag.Flag) {
		if !documented(fl.Name) {
			missing = append(missing, "metastore --"+fl.Name)
		}
	})
	binaries(t)
	for _, cmd := range toolCommands {
		out, _ := exec.Command(metastoreBin, append(cmd, "-h")...).CombinedOutput()
		names := flagLine.FindAllStringSubmatch(string(out), -1)
		if len(names) == 0 {
			t.Errorf("metastore %s -h lists no flags:\n%s", strings.Join(cmd, " "), out)
		}
		for _, m := range names {
			if m[1] == "w" { // status -w: single-letter, documented as "-w"
				if !strings.Contains(text, " -w ") {
					missing = append(missing, "metastore status -w")
				}
				continue
			}
			if !documented(m[1]) {
				missing = append(missing, "metastore "+strings.Join(cmd, " ")+" --"+m[1])
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("flags missing from docs/OPERATIONS.md:\n%s", strings.Join(missing, "\n"))
	}
}
