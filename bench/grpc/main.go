// The gRPC benchmark's two ends (bench/grpc.py): a gRPC server answering every unary call
// with "ok", and a load generator making unary calls with a bearer token, closed loop (as
// fast as it can) or paced (open loop, at a fixed rate, each call's latency counted from
// when it was due). Messages are raw bytes, so neither end spends time on protobuf.
//
// usage: grpc-bench serve PORT
//
//	grpc-bench load ADDR AUTHORITY TOKEN CONNECTIONS CONCURRENCY SECONDS [RATE]
//
// `load` prints one JSON object: calls, errors, seconds, calls_per_second, p50_us, p99_us.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const method = "/frontdoor.bench.Echo/Unary"

type raw struct{}

func (raw) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (raw) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (raw) Name() string { return "raw" }

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: grpc-bench serve PORT | load ADDR AUTHORITY TOKEN CONNECTIONS CONCURRENCY SECONDS [RATE]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serve(port string) error {
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return err
	}
	ok := []byte("ok")
	server := grpc.NewServer(grpc.ForceServerCodec(raw{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var in []byte
			if err := stream.RecvMsg(&in); err != nil {
				return err
			}
			return stream.SendMsg(&ok)
		}))
	return server.Serve(listener)
}

func load(args []string) error {
	if len(args) < 6 {
		return fmt.Errorf("load needs ADDR AUTHORITY TOKEN CONNECTIONS CONCURRENCY SECONDS [RATE]")
	}
	addr, authority, token := args[0], args[1], args[2]
	connections, _ := strconv.Atoi(args[3])
	concurrency, _ := strconv.Atoi(args[4])
	seconds, _ := strconv.ParseFloat(args[5], 64)
	rate := 0.0
	if len(args) > 6 {
		rate, _ = strconv.ParseFloat(args[6], 64)
	}
	conns := make([]*grpc.ClientConn, connections)
	for i := range conns {
		c, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithAuthority(authority),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(raw{})))
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	call := func(c *grpc.ClientConn) error {
		in, out := []byte("hi"), []byte(nil)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.Invoke(cctx, method, &in, &out)
	}
	// Warm every connection (and the front door's token cache) before counting.
	for _, c := range conns {
		if err := call(c); err != nil {
			return fmt.Errorf("warm-up call: %w", err)
		}
	}

	var mu sync.Mutex
	latencies := make([]time.Duration, 0, 1<<20)
	var errors atomic.Int64
	record := func(d time.Duration, err error) {
		if err != nil {
			errors.Add(1)
			return
		}
		mu.Lock()
		latencies = append(latencies, d)
		mu.Unlock()
	}
	started := time.Now()
	end := started.Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	if rate <= 0 {
		for w := 0; w < concurrency; w++ {
			wg.Add(1)
			go func(c *grpc.ClientConn) {
				defer wg.Done()
				for time.Now().Before(end) {
					t := time.Now()
					err := call(c)
					record(time.Since(t), err)
				}
			}(conns[w%len(conns)])
		}
	} else {
		interval := time.Duration(float64(time.Second) / rate)
		for i := 0; ; i++ {
			due := started.Add(time.Duration(i) * interval)
			if !due.Before(end) {
				break
			}
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func(c *grpc.ClientConn, due time.Time) {
				defer wg.Done()
				err := call(c)
				record(time.Since(due), err)
			}(conns[i%len(conns)], due)
		}
	}
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	at := func(q float64) int64 {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(q*float64(len(latencies)-1))].Microseconds()
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"calls":            len(latencies),
		"errors":           errors.Load(),
		"seconds":          elapsed,
		"calls_per_second": float64(len(latencies)) / elapsed,
		"p50_us":           at(0.50),
		"p99_us":           at(0.99),
	})
}
