package server

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// clientCodec is the client listeners' gRPC codec. It counts the bytes of
// every message, as etcd's own codec does
// (etcd_network_client_grpc_{sent,received}_bytes_total), and encodes
// etcd's messages with their generated Marshal/Unmarshal methods, which
// skip the protobuf reflection (and the extra copy) of the default codec.
// Messages without those methods (the health service's) go to the default
// codec. Counting here rather than in a stats handler spares every call the
// handler's per-call work (gRPC copies the incoming metadata, looks up the
// peer and builds a report for each event once a handler is installed).
type clientCodec struct {
	m        *serverMetrics
	fallback encoding.CodecV2
}

func newClientCodec(m *serverMetrics) *clientCodec {
	return &clientCodec{m: m, fallback: encoding.GetCodecV2(protoenc.Name)}
}

// gogoMessage is what etcd's generated (gogoproto) messages implement.
type gogoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
	Unmarshal([]byte) error
}

func (c *clientCodec) Name() string { return protoenc.Name }

func (c *clientCodec) Marshal(v any) (mem.BufferSlice, error) {
	g, ok := v.(gogoMessage)
	if !ok {
		data, err := c.fallback.Marshal(v)
		if err == nil {
			c.m.clientSentBytes.Add(float64(data.Len()))
		}
		return data, err
	}
	size := g.Size()
	var data mem.BufferSlice
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := g.MarshalToSizedBuffer(buf); err != nil {
			return nil, err
		}
		data = mem.BufferSlice{mem.SliceBuffer(buf)}
	} else {
		pool := mem.DefaultBufferPool()
		buf := pool.Get(size)
		if _, err := g.MarshalToSizedBuffer((*buf)[:size]); err != nil {
			pool.Put(buf)
			return nil, err
		}
		*buf = (*buf)[:size]
		data = mem.BufferSlice{mem.NewBuffer(buf, pool)}
	}
	c.m.clientSentBytes.Add(float64(size))
	return data, nil
}

func (c *clientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c.m.clientReceivedBytes.Add(float64(data.Len()))
	g, ok := v.(gogoMessage)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	// The generated Unmarshal copies bytes fields out of its input, so the
	// buffer may go back to the pool once it returns.
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := g.Unmarshal(buf.ReadOnlyData()); err != nil {
		return fmt.Errorf("failed to unmarshal %T: %w", v, err)
	}
	return nil
}
