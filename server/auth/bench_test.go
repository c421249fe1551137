package auth

import (
	"fmt"
	"math/rand"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

const (
	benchUsers        = 1000
	benchRoles        = 100
	benchPermsPerRole = 100 // 10k permission ranges in all
	benchRolesPerUser = 5
)

// benchStore builds an enabled store with benchUsers users and
// benchRoles*benchPermsPerRole ranges; each user holds benchRolesPerUser
// random roles (about 500 ranges).
func benchStore(b *testing.B) (*Store, []*AuthInfo, [][2][]byte) {
	rng := rand.New(rand.NewSource(1))
	st := State{Enabled: true, Revision: 1}
	for i := 0; i < benchRoles; i++ {
		r := &authpb.Role{Name: []byte(fmt.Sprintf("role%03d", i))}
		for j := 0; j < benchPermsPerRole; j++ {
			k := fmt.Sprintf("key/%05d/", i*benchPermsPerRole+j)
			r.KeyPermission = append(r.KeyPermission, &authpb.Permission{
				PermType: authpb.Permission_Type(j % 3), Key: []byte(k), RangeEnd: []byte(k + "\xff")})
		}
		st.Roles = append(st.Roles, r)
	}
	st.Users = append(st.Users, &authpb.User{Name: []byte("root"), Roles: []string{"root"}})
	ais := make([]*AuthInfo, benchUsers)
	for i := range ais {
		name := fmt.Sprintf("user%04d", i)
		perm := rng.Perm(benchRoles)[:benchRolesPerUser]
		roles := make([]string, 0, benchRolesPerUser)
		for _, p := range perm {
			roles = append(roles, fmt.Sprintf("role%03d", p))
		}
		sortStrings(roles)
		st.Users = append(st.Users, &authpb.User{Name: []byte(name), Roles: roles})
		ais[i] = &AuthInfo{Username: name, Revision: 1}
	}
	be := newMemBackend()
	WriteState(be, st)
	s, err := NewStore(be, Options{})
	if err != nil {
		b.Fatal(err)
	}
	// Request ranges: a key or a sub-range inside some permission (permitted
	// for about 5% of users), and keys between permissions (never).
	reqs := make([][2][]byte, 4096)
	for i := range reqs {
		k := fmt.Sprintf("key/%05d/", rng.Intn(benchRoles*benchPermsPerRole))
		switch rng.Intn(3) {
		case 0:
			reqs[i] = [2][]byte{[]byte(k + "x"), nil}
		case 1:
			reqs[i] = [2][]byte{[]byte(k + "a"), []byte(k + "b")}
		default:
			reqs[i] = [2][]byte{[]byte(k[:len(k)-1]), nil}
		}
	}
	return s, ais, reqs
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// BenchmarkIsRangePermitted: one core, 1k users, 10k ranges.
//
//	go test -run XXX -bench . ./server/auth
func BenchmarkIsRangePermitted(b *testing.B) {
	s, ais, reqs := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := reqs[i&(len(reqs)-1)]
		_ = s.IsRangePermitted(ais[i%len(ais)], r[0], r[1])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}

func BenchmarkIsPutPermittedParallel(b *testing.B) {
	s, ais, reqs := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		i := rand.Int()
		for p.Next() {
			i++
			_ = s.IsPutPermitted(ais[i%len(ais)], reqs[i&(len(reqs)-1)][0])
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}

// BenchmarkRoleGrantPermission measures the copy-on-write rebuild cost of
// one auth change at this size.
func BenchmarkRoleGrantPermission(b *testing.B) {
	s, _, _ := benchStore(b)
	w := newMemBackend()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := s.RoleGrantPermission(w, &pb.AuthRoleGrantPermissionRequest{Name: "role007", Perm: &authpb.Permission{
			PermType: authpb.READ, Key: []byte(fmt.Sprintf("new/%d", i))}})
		if err != nil {
			b.Fatal(err)
		}
	}
}
