package server

import (
	"encoding/json"
	"net/http"

	"github.com/metastore/metastore/engine/failpoint"
)

// failpointsPath is where a failpoints build (-tags failpoints) mounts the
// failpoint control on the peer listener. A normal build mounts nothing:
// the points are not compiled in.
const failpointsPath = "/debug/failpoints"

// failpointsHandler sets the engine/failpoint points of this process from
// outside, for the robustness suite:
//
//	GET  /debug/failpoints                          {"hits": {name: count}}
//	POST /debug/failpoints?name=<point>&term=<term> set one point ("off" clears)
//
// Terms are failpoint's: panic, error, exit, off, sleep(ms), with an
// optional N* count. A bad name or term answers 400 and changes nothing.
type failpointsHandler struct{}

// failpointsStatus is what GET answers.
type failpointsStatus struct {
	Names []string          `json:"names"`
	Hits  map[string]uint64 `json:"hits"`
}

func (failpointsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(failpointsStatus{Names: failpoint.Names(), Hits: failpoint.Hits()})
	case http.MethodPost:
		q := r.URL.Query()
		if err := failpoint.Set(q.Get("name"), q.Get("term")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
