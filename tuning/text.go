package tuning

import (
	"errors"
	"fmt"
	"strings"
)

// String returns o in the options-file format that Parse reads: a header,
// then for each field in declaration order a comment with the first
// sentence of its documentation and a "key = value" line. Sizes are written
// in the largest binary unit that divides them (64 MiB).
func (o Options) String() string {
	var b strings.Builder
	b.WriteString("# MetaStore engine options\n")
	for i := range fields {
		f := &fields[i]
		fmt.Fprintf(&b, "\n# %s\n%s = %s\n", f.doc, f.key, f.format(&o))
	}
	return b.String()
}

// Parse reads options in the format String writes, starting from Default:
// keys the text leaves out keep their defaults. Each non-blank line is
// "key = value"; a '#' starts a comment that runs to the end of the line.
// Values are written as Set takes them.
//
// Parse reports every unknown key, duplicate key and bad value at once,
// each with its line number; if there are none it returns the result of
// Validate.
func Parse(text string) (Options, error) {
	return ParseOver(Default(), text)
}

// ParseOver is Parse starting from base instead of Default: keys absent
// from text keep base's values. It lets an operator's file refine a preset.
func ParseOver(base Options, text string) (Options, error) {
	o := base
	lines := make(map[string]int) // key -> line that set it
	var errs []error
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		f := lookup(key)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("line %d: want key = value, got %q", n, line))
		case f == nil:
			errs = append(errs, fmt.Errorf("line %d: unknown key %q", n, key))
		case lines[key] != 0:
			errs = append(errs, fmt.Errorf("line %d: duplicate key %q (first set on line %d)", n, key, lines[key]))
		default:
			lines[key] = n
			if err := f.set(&o, value); err != nil {
				errs = append(errs, fmt.Errorf("line %d: %s: %w", n, key, err))
			}
		}
	}
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	if err := o.validate(lines); err != nil {
		return Options{}, err
	}
	return o, nil
}

// Set sets the field with the given options-file key from value, written
// as in an options file: a decimal integer; for sizes optionally followed by
// a binary (KiB, MiB, GiB, TiB) or decimal (KB, MB, GB, TB) unit; a number
// for bloom-bits-per-key; true or false; or a compression or WAL recovery
// name. Set does not validate the result; on error o is unchanged.
func (o *Options) Set(key, value string) error {
	f := lookup(key)
	if f == nil {
		return fmt.Errorf("unknown key %q", key)
	}
	if err := f.set(o, value); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// ApplyOverrides applies "key=value" overrides to o in order, as Set does,
// then validates the result. It reports every bad override at once.
func ApplyOverrides(o Options, kvs []string) (Options, error) {
	var errs []error
	for _, kv := range kvs {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("override %q: want key=value", kv))
		} else if err := o.Set(strings.TrimSpace(key), value); err != nil {
			errs = append(errs, fmt.Errorf("override %q: %w", kv, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Options{}, err
	}
	if err := o.Validate(); err != nil {
		return Options{}, err
	}
	return o, nil
}
