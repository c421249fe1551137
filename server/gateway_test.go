package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

func post(t testing.TB, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestGatewayPutRange(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	base := cfg.AdvertiseClientURLs[0]

	// curl -L http://127.0.0.1:2379/v3/kv/put -X POST -d '{"key":"Zm9v","value":"YmFy"}'
	code, body := post(t, base+"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`)
	if code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	var put struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(body), &put); err != nil || put.Header.Revision == "" {
		t.Fatalf("put response %s (%v)", body, err)
	}

	code, body = post(t, base+"/v3/kv/range", `{"key":"Zm9v"}`)
	if code != 200 {
		t.Fatalf("range: %d %s", code, body)
	}
	var rng struct {
		Kvs []struct {
			Key, Value string
		} `json:"kvs"`
		Count string `json:"count"`
	}
	if err := json.Unmarshal([]byte(body), &rng); err != nil {
		t.Fatal(err)
	}
	if len(rng.Kvs) != 1 || rng.Kvs[0].Key != "Zm9v" || rng.Kvs[0].Value != "YmFy" || rng.Count != "1" {
		t.Fatalf("range response %s", body)
	}
	// What the gateway wrote, gRPC reads.
	if r, err := cli.Get(context.Background(), "foo"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "bar" {
		t.Fatalf("clientv3 get foo: %v %v", r, err)
	}
	// etcd's /v3beta/ prefix still works.
	if code, body := post(t, base+"/v3beta/kv/range", `{"key":"Zm9v"}`); code != 200 {
		t.Fatalf("/v3beta/kv/range: %d %s", code, body)
	}
	// Errors carry gRPC's status, as etcd's gateway.
	if code, body := post(t, base+"/v3/kv/put", `{"value":"YmFy"}`); code != 400 {
		t.Fatalf("put without key: %d %s", code, body)
	}
	code, body = post(t, base+"/v3/maintenance/status", `{}`)
	if code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	var lease struct {
		ID string `json:"ID"`
	}
	code, body = post(t, base+"/v3/lease/grant", `{"TTL":"60"}`)
	if err := json.Unmarshal([]byte(body), &lease); code != 200 || err != nil || lease.ID == "" {
		t.Fatalf("lease grant: %d %s", code, body)
	}
	// The lock gateway reaches the Lock service.
	code, body = post(t, base+"/v3/lock/lock", `{"name":"bG9jaw==","lease":"`+lease.ID+`"}`)
	if code != 200 {
		t.Fatalf("lock: %d %s", code, body)
	}
}
