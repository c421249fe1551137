package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// profiler captures a server's profiles over HTTP during a run: the CPU,
// mutex and block profiles over the run's first seconds (delta profiles,
// requested when the clock starts), and the heap profile at the end.
// etcd and MetaStore serve them with --enable-pprof; they sample mutexes
// but not blocking, so the block profile is usually empty.
type profiler struct {
	base    string // ends in "/debug/pprof/"
	dir     string
	stem    string
	client  *http.Client
	wg      sync.WaitGroup
	mu      sync.Mutex
	files   []string
	errs    []error
	seconds int
}

// pprofGrace is added to the profile length for the HTTP timeouts.
const pprofGrace = 30 * time.Second

// pprofBase normalizes a server or pprof URL to the pprof directory URL.
func pprofBase(u string) string {
	u = strings.TrimRight(u, "/")
	if !strings.HasSuffix(u, "/debug/pprof") {
		u += "/debug/pprof"
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u + "/"
}

func startProfiler(ctx context.Context, url, dir, stem string, seconds int) *profiler {
	p := &profiler{base: pprofBase(url), dir: dir, stem: stem, seconds: seconds,
		client: &http.Client{Timeout: time.Duration(seconds)*time.Second + pprofGrace}}
	for _, kind := range []string{"profile", "mutex", "block"} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			name := kind
			if kind == "profile" {
				name = "cpu"
			}
			p.fetch(ctx, fmt.Sprintf("%s?seconds=%d", kind, seconds), name)
		}()
	}
	return p
}

// finish takes the heap profile, waits for the others and returns the
// files written (relative to dir) and the errors met.
func (p *profiler) finish(ctx context.Context) ([]string, error) {
	p.fetch(ctx, "heap", "heap")
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.Strings(p.files)
	return p.files, errors.Join(p.errs...)
}

func (p *profiler) fetch(ctx context.Context, query, name string) {
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+query, nil)
		if err != nil {
			return err
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("%s: %s: %s", p.base+query, resp.Status, strings.TrimSpace(string(msg)))
		}
		file := p.stem + "." + name + ".pb.gz"
		f, err := os.Create(filepath.Join(p.dir, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		p.mu.Lock()
		p.files = append(p.files, file)
		p.mu.Unlock()
		return nil
	}()
	if err != nil {
		p.mu.Lock()
		p.errs = append(p.errs, fmt.Errorf("bench: pprof %s: %w", name, err))
		p.mu.Unlock()
	}
}
