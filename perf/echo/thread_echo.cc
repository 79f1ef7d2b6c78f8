// perf/echo/thread_echo: the echo protocol with one OS thread per
// connection and blocking read()/write(), the model fibers replace.
//
// --threads is ignored beyond the accepting thread: the kernel schedules
// the connection threads over whatever CPUs the process may use (the
// benchmark driver restricts that with taskset). Each thread gets a 64 KiB
// stack, bobbin's default fiber stack size, so 10,000 connections fit.
//
// Run: thread_echo --port 7000
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdint>

#include "peer_common.h"

namespace {

void* echo(void* arg) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  char buf[perf_echo::kBufferSize];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t sent = 0;
    while (sent < n) {
      ssize_t w = send(fd, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      sent += w;
    }
    if (sent < n) break;
  }
  close(fd);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  perf_echo::options o = perf_echo::parse_options(argc, argv);
  perf_echo::raise_fd_limit();
  int listener = perf_echo::listen_all(o, 1)[0];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  o.threads = 1;
  perf_echo::run_threads(o, "thread per connection", [&](int) {
    for (;;) {
      int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        // EMFILE or out of threads: the connection stays queued; retry soon.
        if (errno != EINTR && errno != ECONNABORTED) usleep(10000);
        continue;
      }
      pthread_t t;
      if (pthread_create(&t, &attr, echo, reinterpret_cast<void*>(static_cast<intptr_t>(fd))) != 0) {
        std::fprintf(stderr, "thread_echo: pthread_create failed; closing the connection\n");
        close(fd);
      }
    }
  });
}
