package ponixnats

import (
	"fmt"
	"strings"
)

// ValidName reports whether s can name a JetStream stream or consumer: non-empty, at most 255
// bytes, without whitespace, control characters, '.', '*', '>', '/' or '\\'.
func ValidName(s string) bool {
	if s == "" || len(s) > 255 || strings.ContainsAny(s, ".*>/\\") {
		return false
	}
	return validToken(s)
}

// validToken reports whether s can be one literal token of a subject: non-empty, without '.',
// '*', '>', whitespace or control characters.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '*' || c == '>':
			return false
		case c <= ' ' || c == 0x7f:
			return false
		}
	}
	// Reject non-ASCII whitespace too (e.g. U+00A0, U+2028).
	return strings.IndexFunc(s, isUnicodeSpace) < 0
}

func isUnicodeSpace(r rune) bool {
	switch r {
	case 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// ValidateSubject checks a subject or a filter with wildcards: non-empty tokens, '*' as a
// whole token, '>' only as the last one.
func ValidateSubject(s string) error { return validSubject(s) }

// validSubject reports whether s is a well-formed subject or wildcard filter.
func validSubject(s string) error {
	if s == "" {
		return fmt.Errorf("empty subject")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "*":
		case t == ">":
			if i != len(toks)-1 {
				return fmt.Errorf("subject %q: '>' must be the last token", s)
			}
		case !validToken(t):
			return fmt.Errorf("subject %q: token %d (%q) is not a valid subject token", s, i+1, t)
		}
	}
	return nil
}

// SubjectsOverlap reports whether some concrete subject matches both subject filters a and b
// (each may contain '*' and '>' wildcards). JetStream refuses overlapping filter subjects on
// one consumer, and a stream must not capture the subjects of its own dead letters.
func SubjectsOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i < len(at) && at[i] == ">":
			return i < len(bt) // '>' needs at least one more token
		case i < len(bt) && bt[i] == ">":
			return i < len(at)
		case i == len(at) || i == len(bt):
			return false
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
			continue
		default:
			return false
		}
	}
}
