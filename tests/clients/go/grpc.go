// The gRPC cell: a client as Google's run/grpc-ping sample writes one, grpc-go over TLS to
// HOST:443 with an ID token for https://HOST as per-RPC credentials from
// google.golang.org/api/idtoken (the metadata server, on Cloud Run). Messages are raw bytes
// (a codec of our own, no protobuf): the transport and the identity are under test.
//
// usage: go-client grpc HOST CASE, CASE one of
//
//	kinds     the four method kinds, trailers and a client deadline
//	unary     one unary call
//	no-token  one unary call without per-RPC credentials
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/oauth"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

const probe = "/frontdoor.test.Probe/"

// raw passes messages through as bytes.
type raw struct{}

func (raw) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (raw) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (raw) Name() string { return "raw" }

func grpcCell(ctx context.Context, host, which string) (map[string]any, error) {
	options := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(raw{})),
	}
	if which != "no-token" {
		source, err := idtoken.NewTokenSource(ctx, "https://"+host)
		if err != nil {
			return nil, fmt.Errorf("idtoken.NewTokenSource: %w", err)
		}
		options = append(options, grpc.WithPerRPCCredentials(oauth.TokenSource{TokenSource: source}))
	}
	conn, err := grpc.NewClient(host+":443", options...)
	if err != nil {
		return nil, fmt.Errorf("grpc.NewClient: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	switch which {
	case "unary", "no-token":
		answer, err := unary(ctx, conn, "Unary", "hello")
		if err != nil {
			return failed(err), nil
		}
		var decoded any
		if err := json.Unmarshal(answer, &decoded); err != nil {
			return nil, err
		}
		return map[string]any{"code": "OK", "answer": decoded}, nil
	case "kinds":
		return kinds(ctx, conn)
	}
	return nil, fmt.Errorf("unknown gRPC case %q", which)
}

func failed(err error) map[string]any {
	s := grpcstatus.Convert(err)
	return map[string]any{"code": s.Code().String(), "details": s.Message()}
}

func unary(ctx context.Context, conn *grpc.ClientConn, method, message string, opts ...grpc.CallOption) ([]byte, error) {
	in := []byte(message)
	var out []byte
	err := conn.Invoke(ctx, probe+method, &in, &out, opts...)
	return out, err
}

func kinds(ctx context.Context, conn *grpc.ClientConn) (map[string]any, error) {
	out := map[string]any{}
	answer, err := unary(ctx, conn, "Unary", "hello")
	if err != nil {
		return nil, fmt.Errorf("Unary: %w", err)
	}
	var decoded any
	if err := json.Unmarshal(answer, &decoded); err != nil {
		return nil, err
	}
	out["unary"] = decoded

	desc := &grpc.StreamDesc{ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, probe+"ServerStream")
	if err != nil {
		return nil, err
	}
	ask := []byte(`{"count": 5, "size": 3}`)
	if err := stream.SendMsg(&ask); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	messages := []string{}
	for {
		var m []byte
		err := stream.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ServerStream: %w", err)
		}
		messages = append(messages, string(m))
	}
	out["server_stream"] = messages

	stream, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, probe+"ClientStream")
	if err != nil {
		return nil, err
	}
	for _, part := range []string{strings.Repeat("a", 10), strings.Repeat("b", 20), strings.Repeat("c", 30)} {
		m := []byte(part)
		if err := stream.SendMsg(&m); err != nil {
			return nil, err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var total []byte
	if err := stream.RecvMsg(&total); err != nil {
		return nil, fmt.Errorf("ClientStream: %w", err)
	}
	out["client_stream"] = string(total)

	// Each message goes only once the answer to the one before has arrived.
	stream, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, probe+"Bidi")
	if err != nil {
		return nil, err
	}
	echoes := []string{}
	for i := 1; i <= 3; i++ {
		m := []byte(fmt.Sprint(i))
		if err := stream.SendMsg(&m); err != nil {
			return nil, err
		}
		var echo []byte
		if err := stream.RecvMsg(&echo); err != nil {
			return nil, fmt.Errorf("Bidi: %w", err)
		}
		echoes = append(echoes, string(echo))
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	out["bidi"] = echoes

	var trailer metadata.MD
	answer, err = unary(ctx, conn, "Trailers", "", grpc.Trailer(&trailer))
	if err != nil {
		return nil, fmt.Errorf("Trailers: %w", err)
	}
	out["trailers"] = map[string]any{"answer": string(answer), "trailing": map[string]any{"x-probe-trailer": strings.Join(trailer.Get("x-probe-trailer"), ",")}}

	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = unary(short, conn, "Slow", `{"seconds": 5}`)
	out["deadline"] = failed(err)
	return out, nil
}
