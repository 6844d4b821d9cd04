package config

import "testing"

// TestSections checks that every setting, --profile and --config is in exactly one
// section of serve's --help, and that every key a section names exists.
func TestSections(t *testing.T) {
	want := map[string]bool{KeyProfile: true, KeyConfig: true}
	for _, f := range Fields() {
		want[f.Key] = true
	}
	seen := map[string]string{}
	for _, s := range Sections() {
		if len(s.Keys) == 0 {
			t.Errorf("section %q is empty", s.Name)
		}
		for _, k := range s.Keys {
			if !want[k] {
				t.Errorf("section %q names %q, which is not a setting", s.Name, k)
			}
			if prev, dup := seen[k]; dup {
				t.Errorf("%q is in sections %q and %q", k, prev, s.Name)
			}
			seen[k] = s.Name
		}
	}
	for k := range want {
		if _, ok := seen[k]; !ok {
			t.Errorf("setting %q is in no section: add it to sections in sections.go", k)
		}
	}
}
