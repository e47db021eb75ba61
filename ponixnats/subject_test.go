package ponixnats

import "testing"

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"processed_envelopes": true, "ponix-all-in-one": true, "ünïcode": true,
		"": false, "a.b": false, "a*": false, ">": false, "a b": false, "a\tb": false, "a\u00a0b": false, "a\nb": false,
		"a/b": false, "a\\b": false, string(make([]byte, 256)): false,
	} {
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v; want %v", s, got, want)
		}
	}
	for s, ok := range map[string]bool{"a.b": true, "a.*.c": true, "a.>": true, "a/b.c": true, "": false, "a..b": false, "a.>.c": false, "a b": false} {
		if err := ValidateSubject(s); (err == nil) != ok {
			t.Errorf("ValidateSubject(%q) = %v", s, err)
		}
	}
}

func TestSubjectsOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"processed_envelopes.>", "processed_envelopes.dlq.>", true},
		{"processed_envelopes.>", "processed_envelopes_dlq.>", false},
		{"a.*", "a.b.>", false},
		{"a.*.c", "a.b.>", true},
		{"a", "a.>", false},
		{">", "x.>", true},
		{"a.b", "a.b", true},
	} {
		if got := SubjectsOverlap(c.a, c.b); got != c.want {
			t.Errorf("SubjectsOverlap(%q, %q) = %v; want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestValidSubject(t *testing.T) {
	for s, ok := range map[string]bool{"a.>": true, "a.*.b": true, "a.>.b": false, "": false, "a..b": false} {
		if err := validSubject(s); (err == nil) != ok {
			t.Errorf("validSubject(%q) = %v; want ok=%v", s, err, ok)
		}
	}
}
