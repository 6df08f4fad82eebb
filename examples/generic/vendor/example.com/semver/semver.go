// Package semver checks semantic version strings of the form vMAJOR.MINOR.PATCH[-PRE][+BUILD].
//
// A small module vendored into the kdist "generic" example so that its binaries really
// depend on a third-party module (kdist's SBOM test reads it back from the binaries).
package semver

import "strings"

// IsValid reports whether v is a valid semantic version with a leading "v".
func IsValid(v string) bool {
	if !strings.HasPrefix(v, "v") {
		return false
	}
	core := v[1:]
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		if !validSuffix(core[i+1:]) {
			return false
		}
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if !numeric(p) || (len(p) > 1 && p[0] == '0') {
			return false
		}
	}
	return true
}

func numeric(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validSuffix(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		ok := c == '.' || c == '-' || c == '+' || (c >= '0' && c <= '9') ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}
