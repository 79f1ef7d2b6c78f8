// The echo protocol in Go, for perf/echo/compare_echo.py: one goroutine per
// connection with the net package, as a Go programmer writes it. GOMAXPROCS
// is the --threads the other peers take.
//
//	go_echo --port N --threads N
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0: any)")
	threads := flag.Int("threads", 1, "GOMAXPROCS")
	flag.Parse()
	if *threads < 1 {
		fmt.Fprintln(os.Stderr, "go_echo: --threads must be at least 1")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*threads)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_echo:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s threads %d (go)\n", l.Addr(), *threads)
	os.Stdout.Sync()
	for {
		c, err := l.Accept()
		if err != nil {
			continue // EMFILE and the like: the next Accept may succeed
		}
		go serve(c)
	}
}
