// Go beside bobbin in perf/ (perf/go/micro): the micro-benchmarks of perf/micro, written the
// way a Go programmer would, so perf/micro/report.py can set each bobbin
// figure beside Go's from the same run. Each benchmark runs -reps times and
// the median time per item is printed, as JSON: {"name": ns, ...}.
//
//	gobench [-reps 5] [-quick]
//
// Names and items (GOMAXPROCS is set per benchmark, as named):
//
//	go_gosched/procs:1       two goroutines calling runtime.Gosched in turn; per Gosched
//	go_chan/procs:1          ping-pong over two unbuffered channels; per round trip
//	go_spawn_join/procs:1    go f(); wait for it (sync.WaitGroup); per goroutine
//	go_skynet/leaves:1000000/procs:1   the skynet tree; per goroutine created
//	go_mutex/goroutines:16/procs:2     16 goroutines incrementing under one sync.Mutex; per lock
//	go_memory/goroutines:1000000       resident bytes per goroutine parked on a channel
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// repeat runs f reps times; f returns (elapsed, items); the result is the
// median ns per item.
func repeat(reps int, f func() (time.Duration, int)) float64 {
	var per []float64
	for i := 0; i < reps; i++ {
		d, n := f()
		per = append(per, float64(d.Nanoseconds())/float64(n))
	}
	return median(per)
}

func gosched(n int) (time.Duration, int) {
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		for !stop.Load() {
			runtime.Gosched()
		}
		close(done)
	}()
	runtime.Gosched()
	start := time.Now()
	for i := 0; i < n; i++ {
		runtime.Gosched()
	}
	d := time.Since(start)
	stop.Store(true)
	<-done
	return d, 2 * n
}

func chanPingPong(n int) (time.Duration, int) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	d := time.Since(start)
	close(ping)
	return d, n
}

func spawnJoin(n int) (time.Duration, int) {
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
		wg.Wait()
	}
	return time.Since(start), n
}

func skynet(c chan int, num, size, div int) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int, div)
	sub := size / div
	for i := 0; i < div; i++ {
		go skynet(rc, num+i*sub, sub, div)
	}
	sum := 0
	for i := 0; i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func skynetRun(leaves int) (time.Duration, int) {
	goroutines := 0
	for l := leaves; l >= 1; l /= 10 {
		goroutines += l
	}
	c := make(chan int, 1)
	start := time.Now()
	go skynet(c, 0, leaves, 10)
	sum := <-c
	d := time.Since(start)
	if sum != leaves*(leaves-1)/2 {
		panic("skynet: wrong sum")
	}
	return d, goroutines
}

func mutexContended(goroutines int, d time.Duration) (time.Duration, int) {
	var mu sync.Mutex
	var stop atomic.Bool
	shared := 0
	var locks atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := int64(0)
			for !stop.Load() {
				mu.Lock()
				shared++
				mu.Unlock()
				n++
			}
			locks.Add(n)
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	_ = shared
	return time.Since(start), int(locks.Load())
}

func rssBytes() int64 {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	if !s.Scan() {
		return -1
	}
	fields := strings.Fields(s.Text()) // size resident shared ... (pages)
	if len(fields) < 2 {
		return -1
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func memoryPerParked(n int) float64 {
	runtime.GC()
	before := rssBytes()
	block := make(chan struct{})
	var started sync.WaitGroup
	for i := 0; i < n; i++ {
		started.Add(1)
		go func() {
			started.Done()
			<-block
		}()
	}
	started.Wait()
	after := rssBytes()
	close(block)
	return float64(after-before) / float64(n)
}

func main() {
	reps := flag.Int("reps", 5, "repetitions per benchmark (the median is reported)")
	quick := flag.Bool("quick", false, "shorter runs, no 1M memory probe")
	flag.Parse()
	scale := 1
	if *quick {
		scale = 5
	}
	out := map[string]float64{}
	runtime.GOMAXPROCS(1)
	out["go_gosched/procs:1"] = repeat(*reps, func() (time.Duration, int) { return gosched(2000000 / scale) })
	out["go_chan/procs:1"] = repeat(*reps, func() (time.Duration, int) { return chanPingPong(1000000 / scale) })
	out["go_spawn_join/procs:1"] = repeat(*reps, func() (time.Duration, int) { return spawnJoin(500000 / scale) })
	out["go_skynet/leaves:1000000/procs:1"] = repeat(*reps, func() (time.Duration, int) { return skynetRun(1000000) })
	runtime.GOMAXPROCS(2)
	out["go_mutex/goroutines:16/procs:2"] = repeat(*reps, func() (time.Duration, int) {
		return mutexContended(16, time.Duration(300/scale)*time.Millisecond)
	})
	if !*quick {
		runtime.GOMAXPROCS(1)
		out["go_memory/goroutines:1000000"] = memoryPerParked(1000000)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
