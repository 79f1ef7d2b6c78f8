// What interception costs (bobbin/blocking_calls.h), side by side:
//   glibc_recv_eagain        glibc's recv on an empty non-blocking socket,
//                            from a plain thread (found with dlopen, bypassing
//                            bobbin's definition)
//   intercepted_recv_eagain  the same call through bobbin's recv, from a plain
//                            thread: the price of the "am I a fiber?" check
//   intercepted_recv_park    a ping-pong of two fibers on one carrier over a
//                            blocking socketpair with plain send()/recv():
//                            every recv parks (one iteration: a round trip)
//   bobbin_read_some_park    the same ping-pong with tcp_stream::write_all
//                            and read_some on the same kind of socket
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include "bobbin/bobbin.h"

namespace {

using recv_fn = ssize_t (*)(int, void*, size_t, int);

recv_fn glibc_recv() {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc == nullptr) std::abort();
  return reinterpret_cast<recv_fn>(dlsym(libc, "recv"));
}

struct pair_fds {
  int a, b;
  explicit pair_fds(bool nonblocking) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0, sv) != 0) std::abort();
    a = sv[0];
    b = sv[1];
  }
  ~pair_fds() {
    close(a);
    close(b);
  }
};

void glibc_recv_eagain(benchmark::State& state) {
  pair_fds p(true);
  recv_fn real = glibc_recv();
  char c;
  for (auto _ : state) benchmark::DoNotOptimize(real(p.a, &c, 1, 0));
}
BENCHMARK(glibc_recv_eagain);

void intercepted_recv_eagain(benchmark::State& state) {
  pair_fds p(true);
  char c;
  for (auto _ : state) benchmark::DoNotOptimize(recv(p.a, &c, 1, 0));
}
BENCHMARK(intercepted_recv_eagain);

void intercepted_recv_park(benchmark::State& state) {
  pair_fds p(false);
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run([&] {
    auto ponger = bobbin::spawn([&] {
      char c;
      while (recv(p.b, &c, 1, 0) == 1 && c != 'q') send(p.b, &c, 1, MSG_NOSIGNAL);
    });
    char c = 'x';
    for (auto _ : state) {
      send(p.a, &c, 1, MSG_NOSIGNAL);
      recv(p.a, &c, 1, 0);
    }
    c = 'q';
    send(p.a, &c, 1, MSG_NOSIGNAL);
    ponger.join();
  }, o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(intercepted_recv_park)->UseRealTime();

void bobbin_read_some_park(benchmark::State& state) {
  pair_fds p(false);
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run([&] {
    bobbin::tcp_stream a(dup(p.a)), b(dup(p.b));
    auto ponger = bobbin::spawn([&] {
      char c;
      while (b.read_some(std::span(&c, 1)).bytes == 1 && c != 'q') {
        if (!b.write_all(std::string_view(&c, 1))) break;
      }
    });
    char c = 'x';
    for (auto _ : state) {
      a.write_all(std::string_view(&c, 1)).value();  // a failed round trip ends the benchmark
      a.read_some(std::span(&c, 1)).value();
    }
    a.write_all(std::string_view("q", 1)).value();
    ponger.join();
  }, o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bobbin_read_some_park)->UseRealTime();

}  // namespace
