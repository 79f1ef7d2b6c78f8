// go_echoload: the second, independent load generator for the echo servers
// in perf/echo, written to cross-check perf/load/echo_load. It shares no
// code and no I/O model with it: one goroutine per connection, blocking
// net.Conn calls, Go's own netpoller underneath; echo_load is a hand-written
// epoll loop in C++. If both rank the servers alike, the ranking is not an
// artefact of how one client paces, batches or reads.
//
// Each connection runs a closed loop: write an S-byte message, read S bytes
// back, check them byte for byte, record the round trip, repeat, for D
// seconds after a warm-up. Output: one JSON object with the same keys as
// echo_load --json (throughput_rps, p50_us, p99_us, p999_us, max_us, errors,
// connect_errors, and with --server-pid the server's CPU per message).
//
//	go_echoload --port N --connections C --size 64 --duration 3 --warmup 1
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serverCPUSeconds reads utime+stime of a process from /proc, or -1.
func serverCPUSeconds(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

type connResult struct {
	latenciesUs []float64
	errors      int
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func main() {
	host := flag.String("host", "127.0.0.1", "server address")
	port := flag.Int("port", 0, "server port")
	conns := flag.Int("connections", 100, "concurrent connections")
	size := flag.Int("size", 64, "message size in bytes")
	duration := flag.Float64("duration", 3, "measured seconds")
	warmup := flag.Float64("warmup", 1, "seconds before measuring")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	serverPid := flag.Int("server-pid", 0, "server process, for its CPU per message")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)

	addr := net.JoinHostPort(*host, strconv.Itoa(*port))
	var measuring, stopping atomic.Bool
	var connectErrors atomic.Int64
	results := make([]connResult, *conns)
	var ready, done sync.WaitGroup
	ready.Add(*conns)
	done.Add(*conns)
	for i := 0; i < *conns; i++ {
		go func(r *connResult, seed byte) {
			defer done.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			ready.Done()
			if err != nil {
				connectErrors.Add(1)
				return
			}
			defer c.Close()
			msg := make([]byte, *size)
			for j := range msg {
				msg[j] = seed + byte(j)
			}
			got := make([]byte, *size)
			for !stopping.Load() {
				start := time.Now()
				if _, err := c.Write(msg); err != nil {
					r.errors++
					return
				}
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
					r.errors++
					return
				}
				if measuring.Load() {
					r.latenciesUs = append(r.latenciesUs, float64(time.Since(start).Nanoseconds())/1e3)
				}
				msg[0]++ // a different message each time, so a stale echo fails the check
			}
		}(&results[i], byte(i))
	}
	ready.Wait() // every dial has returned: the warm-up starts with all connections open
	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	cpu0 := serverCPUSeconds(*serverPid)
	measuring.Store(true)
	time.Sleep(time.Duration(*duration * float64(time.Second)))
	measuring.Store(false)
	cpu1 := serverCPUSeconds(*serverPid)
	stopping.Store(true)
	done.Wait()

	var all []float64
	errors := 0
	for _, r := range results {
		all = append(all, r.latenciesUs...)
		errors += r.errors
	}
	sort.Float64s(all)
	serverCPU := -1.0
	if cpu0 >= 0 && cpu1 >= 0 {
		serverCPU = cpu1 - cpu0
	}
	perMsg := -1.0
	if serverCPU >= 0 && len(all) > 0 {
		perMsg = serverCPU * 1e6 / float64(len(all))
	}
	max := 0.0
	if len(all) > 0 {
		max = all[len(all)-1]
	}
	out, _ := json.Marshal(map[string]any{
		"connections": *conns, "size": *size, "duration_s": *duration, "requests": len(all),
		"throughput_rps": float64(len(all)) / *duration, "p50_us": percentile(all, 0.50),
		"p99_us": percentile(all, 0.99), "p999_us": percentile(all, 0.999), "max_us": max,
		"errors": errors, "connect_errors": connectErrors.Load(), "server_cpu_s": serverCPU,
		"server_cpu_us_per_msg": perMsg,
	})
	fmt.Println(string(out))
	if errors != 0 || connectErrors.Load() != 0 {
		os.Exit(1)
	}
}
