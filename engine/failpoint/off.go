//go:build !failpoints

package failpoint

import "errors"

// Enabled is false in a normal build: every call site's branch is dead code.
const Enabled = false

var errNotBuilt = errors.New("failpoint: not built with -tags failpoints")

// SetSpec fails: the points are not compiled in.
func SetSpec(string) error { return errNotBuilt }

// Set fails: the points are not compiled in.
func Set(string, string) error { return errNotBuilt }

// Hits is empty: the points are not compiled in.
func Hits() map[string]uint64 { return nil }

// Inject does nothing.
func Inject(string) error { return nil }
