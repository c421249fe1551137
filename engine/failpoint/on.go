//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Enabled is true in a failpoints build.
const Enabled = true

var (
	mu     sync.Mutex
	points = map[string]action{}
	hits   = map[string]uint64{}
)

func init() {
	if spec := os.Getenv(EnvVar); spec != "" {
		if err := SetSpec(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}

// SetSpec sets the points named in "name=term;..." (other points keep
// their terms).
func SetSpec(spec string) error {
	m, err := parseSpec(spec)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	for n, a := range m {
		if a.kind == "off" {
			delete(points, n)
		} else {
			points[n] = a
		}
	}
	return nil
}

// Set sets one point's term ("off" clears it).
func Set(name, term string) error { return SetSpec(name + "=" + term) }

// Hits reports how often each point was reached since start.
func Hits() map[string]uint64 {
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]uint64, len(hits))
	for k, v := range hits {
		out[k] = v
	}
	return out
}

// Inject acts on the point's term, if it has one.
func Inject(name string) error {
	mu.Lock()
	hits[name]++
	a, ok := points[name]
	if ok && a.count > 0 {
		a.count--
		if a.count == 0 {
			delete(points, name)
		} else {
			points[name] = a
		}
	}
	mu.Unlock()
	if !ok {
		return nil
	}
	switch a.kind {
	case "panic":
		panic("failpoint " + name)
	case "error":
		return fmt.Errorf("%w at %s", ErrInjected, name)
	case "exit":
		fmt.Fprintf(os.Stderr, "failpoint %s: exit\n", name)
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Duration(a.sleepMs) * time.Millisecond)
	}
	return nil
}
