package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/metastore/metastore/engine/failpoint"
)

func TestFailpointsHandler(t *testing.T) {
	h := failpointsHandler{}
	post := func(q string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, failpointsPath+"?"+q, nil))
		return rec.Code
	}
	if c := post("name=nosuch&term=panic"); c != http.StatusBadRequest {
		t.Fatalf("unknown point: %d, want 400", c)
	}
	want := http.StatusBadRequest // a normal build has no points to set
	if failpoint.Enabled {
		want = http.StatusNoContent
	}
	if c := post("name=" + failpoint.CompactMid + "&term=1*error"); c != want {
		t.Fatalf("set: %d, want %d", c, want)
	}
	if failpoint.Enabled {
		if err := failpoint.Inject(failpoint.CompactMid); err == nil {
			t.Fatal("point set over HTTP did not act")
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, failpointsPath, nil))
	var st failpointsStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || len(st.Names) != len(failpoint.Names()) {
		t.Fatalf("GET: %v %s", err, rec.Body.String())
	}
	if failpoint.Enabled && st.Hits[failpoint.CompactMid] == 0 {
		t.Fatalf("GET hits %v, want %s counted", st.Hits, failpoint.CompactMid)
	}
}
