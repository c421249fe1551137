package server

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Member is one member of the cluster as the membership records it.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

func (m *Member) clone() *Member {
	c := *m
	c.PeerURLs = append([]string(nil), m.PeerURLs...)
	c.ClientURLs = append([]string(nil), m.ClientURLs...)
	return &c
}

func (m *Member) pb() *pb.Member {
	return &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
}

// computeMemberID derives a member's ID the way etcd does: the first 8 bytes
// of SHA-1 over its sorted peer URLs, the cluster token and, for members
// added at run time, the time of the addition. Members of the initial
// cluster therefore get the same IDs on every member without coordination.
func computeMemberID(peerURLs []string, token string, now *time.Time) uint64 {
	urls := append([]string(nil), peerURLs...)
	sort.Strings(urls)
	b := []byte(strings.Join(urls, ""))
	b = append(b, token...)
	if now != nil {
		b = append(b, fmt.Sprintf("%d", now.Unix())...)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// memberByPeerURLs returns the member of ms whose peer URLs are urls (in
// any order), or nil.
func memberByPeerURLs(ms []*Member, urls []string) *Member {
	for _, m := range ms {
		if sameURLs(m.PeerURLs, urls) {
			return m
		}
	}
	return nil
}

// computeClusterID derives the cluster ID from the initial members' IDs as
// etcd does: SHA-1 over the sorted IDs, big-endian.
func computeClusterID(ids []uint64) uint64 {
	s := append([]uint64(nil), ids...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	b := make([]byte, 8*len(s))
	for i, id := range s {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// parseInitialCluster parses etcd's --initial-cluster syntax,
// "name1=url1,name1=url2,name2=url3", into members with computed IDs.
func parseInitialCluster(s, token string) ([]*Member, error) {
	byName := map[string]*Member{}
	var order []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=url", part)
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("--initial-cluster: %s: %w", name, err)
		}
		m := byName[name]
		if m == nil {
			m = &Member{Name: name}
			byName[name] = m
			order = append(order, name)
		}
		m.PeerURLs = append(m.PeerURLs, u)
	}
	if len(order) == 0 {
		return nil, errors.New("--initial-cluster is empty")
	}
	seen := map[string]string{}
	out := make([]*Member, 0, len(order))
	for _, name := range order {
		m := byName[name]
		for _, u := range m.PeerURLs {
			if other, dup := seen[u]; dup {
				return nil, fmt.Errorf("--initial-cluster: peer URL %s given for %s and %s", u, other, name)
			}
			seen[u] = name
		}
		m.ID = computeMemberID(m.PeerURLs, token, nil)
		out = append(out, m)
	}
	return out, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
		return fmt.Errorf("URL scheme must be http, https, unix or unixs: %s", s)
	}
	if u.Host == "" {
		return fmt.Errorf("URL has no host: %s", s)
	}
	return nil
}

// cluster is the membership as applied from the raft log, plus the IDs of
// removed members (which may never come back).
type cluster struct {
	id uint64

	mu struct {
		sync.RWMutex
		members map[uint64]*Member
		removed map[uint64]bool
	}
}

func newCluster(id uint64) *cluster {
	c := &cluster{id: id}
	c.mu.members = map[uint64]*Member{}
	c.mu.removed = map[uint64]bool{}
	return c
}

// Member returns a copy of member id, or nil.
func (c *cluster) Member(id uint64) *Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if m := c.mu.members[id]; m != nil {
		return m.clone()
	}
	return nil
}

// Members returns copies of the members sorted by ID.
func (c *cluster) Members() []*Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Member, 0, len(c.mu.members))
	for _, m := range c.mu.members {
		out = append(out, m.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// IsRemoved reports whether id was removed from the cluster.
func (c *cluster) IsRemoved(id uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.removed[id]
}

// reset forgets every member (before reloading them from the engine).
func (c *cluster) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.mu.members)
	clear(c.mu.removed)
}

func (c *cluster) setMember(m *Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.members[m.ID] = m.clone()
}

func (c *cluster) removeMember(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mu.members, id)
	c.mu.removed[id] = true
}

// checkNewPeerURLs refuses peer URLs another member already uses.
func (c *cluster) checkNewPeerURLs(self uint64, urls []string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for id, m := range c.mu.members {
		if id == self {
			continue
		}
		for _, u := range m.PeerURLs {
			for _, v := range urls {
				if u == v {
					return errPeerURLExists
				}
			}
		}
	}
	return nil
}

// Persistence: members live in the engine's meta column family under
// "member/<id>" (JSON) and removed IDs under "removed/<id>", written in the
// same batch as the applied index of the conf change that made them.
const (
	metaMemberPrefix  = "member/"
	metaRemovedPrefix = "removed/"
	metaClusterIDKey  = "cluster/id"
)

func memberKey(id uint64) []byte  { return []byte(fmt.Sprintf("%s%016x", metaMemberPrefix, id)) }
func removedKey(id uint64) []byte { return []byte(fmt.Sprintf("%s%016x", metaRemovedPrefix, id)) }

// decodeRemovedKey is removedKey's inverse; it accepts only the canonical
// form (16 lower-case hex digits), as a fuzz target checks.
func decodeRemovedKey(b []byte) (uint64, error) {
	hex, ok := bytes.CutPrefix(b, []byte(metaRemovedPrefix))
	if !ok || len(hex) != 16 {
		return 0, fmt.Errorf("server: corrupt removed-member key %q", b)
	}
	id, err := strconv.ParseUint(string(hex), 16, 64)
	if err != nil || !bytes.Equal(removedKey(id), b) {
		return 0, fmt.Errorf("server: corrupt removed-member key %q", b)
	}
	return id, nil
}

func encodeMember(m *Member) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a struct of strings and ints always marshals
	}
	return b
}

func decodeMember(b []byte) (*Member, error) {
	var m Member
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("server: corrupt member record: %w", err)
	}
	if m.ID == 0 || len(m.PeerURLs) == 0 {
		return nil, fmt.Errorf("server: corrupt member record %q", b)
	}
	return &m, nil
}
