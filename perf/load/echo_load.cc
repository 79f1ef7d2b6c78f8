// perf/load/echo_load: a closed-loop load generator for echo servers.
//
// C connections, spread over T threads, each sending an S-byte message,
// waiting for the same S bytes back (checked byte for byte), and sending the
// next, for D seconds after a warm-up. Written with plain epoll and
// non-blocking sockets, deliberately independent of bobbin, so it can judge
// every server in perf/ the same way.
//
// Output: one line of key=value pairs (and --json for a JSON object):
//   connections size duration_s requests throughput_rps p50_us p99_us
//   p999_us max_us errors connect_errors, and with --server-pid the server's
//   CPU seconds over the measured window and CPU microseconds per message
//   (-1 when unknown): what a server spends when the client saturates first.
// Exit status 0 when errors == 0 and every connection was established.
//
// Run: perf/load/echo_load --port 7000 --connections 10000 --size 64 --duration 5
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  std::string host = "127.0.0.1";
  int port = 7000;
  int connections = 100;
  int size = 64;
  double duration = 5;
  double warmup = 1;
  int threads = 1;
  bool json = false;
  int server_pid = 0;  // when set, the server's CPU time over the measured window is reported
};

// User + system CPU seconds of a whole process (all its threads), or -1.
double process_cpu_seconds(int pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // Fields after the parenthesized command name; utime and stime are the
  // 14th and 15th fields overall, the 12th and 13th after it.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return -1;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct conn {
  int fd = -1;
  size_t sent = 0;
  size_t received = 0;
  clock_type::time_point started;
  bool dead = false;
};

struct thread_result {
  std::vector<uint32_t> latencies_ns;  // capped at ~4.29 s, more than enough
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t connect_errors = 0;
};

void fill_message(std::vector<char>& msg, int conn_index) {
  for (size_t i = 0; i < msg.size(); i++) msg[i] = static_cast<char>('a' + (conn_index + i) % 26);
}

void run_thread(const options& o, int first, int count, std::atomic<bool>& measuring, std::atomic<bool>& stop,
                std::atomic<int>& ready, thread_result& out) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<conn> conns(count);
  std::vector<std::vector<char>> msgs(count, std::vector<char>(o.size));
  std::vector<char> rbuf(o.size);
  for (int i = 0; i < count; i++) {
    fill_message(msgs[i], first + i);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (fd >= 0) close(fd);
      out.connect_errors++;
      conns[i].dead = true;
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    conns[i].fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  ready++;
  while (ready.load() < o.threads) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  auto kick = [&](int i) {
    conn& c = conns[i];
    c.sent = 0;
    c.received = 0;
    c.started = clock_type::now();
    while (c.sent < static_cast<size_t>(o.size)) {
      ssize_t n = send(c.fd, msgs[i].data() + c.sent, o.size - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      // A 64-byte message into an empty socket buffer does not block; any
      // failure here is an error.
      c.dead = true;
      out.errors++;
      return;
    }
  };
  for (int i = 0; i < count; i++) {
    if (!conns[i].dead) kick(i);
  }
  std::vector<epoll_event> events(1024);
  out.latencies_ns.reserve(1 << 20);
  while (!stop.load(std::memory_order_relaxed)) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
    for (int e = 0; e < n; e++) {
      int i = static_cast<int>(events[e].data.u32);
      conn& c = conns[i];
      if (c.dead) continue;
      for (;;) {
        ssize_t r = recv(c.fd, rbuf.data(), o.size - c.received, 0);
        if (r > 0) {
          if (std::memcmp(rbuf.data(), msgs[i].data() + c.received, static_cast<size_t>(r)) != 0) {
            out.errors++;  // the echo came back wrong
            c.dead = true;
            break;
          }
          c.received += static_cast<size_t>(r);
          if (c.received == static_cast<size_t>(o.size)) {
            if (measuring.load(std::memory_order_relaxed)) {
              auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - c.started).count();
              out.latencies_ns.push_back(static_cast<uint32_t>(std::min<int64_t>(ns, UINT32_MAX)));
              out.requests++;
            }
            kick(i);
            break;
          }
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        out.errors++;  // EOF or error while a reply was due
        c.dead = true;
        break;
      }
    }
  }
  for (conn& c : conns) {
    if (c.fd >= 0) close(c.fd);
  }
  close(ep);
}

double percentile_us(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t idx = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[idx] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? argv[++i] : (std::fprintf(stderr, "missing value\n"), std::exit(2), ""); };
    if (a == "--host") o.host = next();
    else if (a == "--port") o.port = std::atoi(next());
    else if (a == "--connections") o.connections = std::atoi(next());
    else if (a == "--size") o.size = std::atoi(next());
    else if (a == "--duration") o.duration = std::atof(next());
    else if (a == "--warmup") o.warmup = std::atof(next());
    else if (a == "--threads") o.threads = std::atoi(next());
    else if (a == "--json") o.json = true;
    else if (a == "--server-pid") o.server_pid = std::atoi(next());
    else {
      std::fprintf(stderr,
                   "usage: %s [--host IP] [--port N] [--connections C] [--size S] [--duration D] [--warmup W] "
                   "[--threads T] [--json] [--server-pid PID]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.connections < 1 || o.size < 1 || o.threads < 1 || o.duration <= 0) {
    std::fprintf(stderr, "echo_load: connections, size, threads and duration must be positive\n");
    return 2;
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  std::atomic<bool> measuring{false}, stop{false};
  std::atomic<int> ready{0};
  std::vector<thread_result> results(o.threads);
  std::vector<std::thread> threads;
  int per = o.connections / o.threads, extra = o.connections % o.threads, first = 0;
  for (int t = 0; t < o.threads; t++) {
    int count = per + (t < extra ? 1 : 0);
    threads.emplace_back(run_thread, std::cref(o), first, count, std::ref(measuring), std::ref(stop), std::ref(ready),
                         std::ref(results[t]));
    first += count;
  }
  while (ready.load() < o.threads) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  double cpu0 = o.server_pid ? process_cpu_seconds(o.server_pid) : -1;
  auto t0 = clock_type::now();
  measuring = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(o.duration));
  measuring = false;
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  double cpu1 = o.server_pid ? process_cpu_seconds(o.server_pid) : -1;
  double server_cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
  stop = true;
  for (auto& t : threads) t.join();

  std::vector<uint32_t> all;
  uint64_t requests = 0, errors = 0, connect_errors = 0;
  for (auto& r : results) {
    all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    requests += r.requests;
    errors += r.errors;
    connect_errors += r.connect_errors;
  }
  std::sort(all.begin(), all.end());
  double rps = static_cast<double>(requests) / secs;
  const char* fmt = o.json
      ? "{\"connections\": %d, \"size\": %d, \"duration_s\": %.2f, \"requests\": %llu, \"throughput_rps\": %.0f, "
        "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, \"errors\": %llu, "
        "\"connect_errors\": %llu, \"server_cpu_s\": %.3f, \"server_cpu_us_per_msg\": %.3f}\n"
      : "connections=%d size=%d duration_s=%.2f requests=%llu throughput_rps=%.0f p50_us=%.1f p99_us=%.1f "
        "p999_us=%.1f max_us=%.1f errors=%llu connect_errors=%llu server_cpu_s=%.3f server_cpu_us_per_msg=%.3f\n";
  std::printf(fmt, o.connections, o.size, secs, static_cast<unsigned long long>(requests), rps,
              percentile_us(all, 0.50), percentile_us(all, 0.99), percentile_us(all, 0.999),
              all.empty() ? 0.0 : all.back() / 1000.0, static_cast<unsigned long long>(errors),
              static_cast<unsigned long long>(connect_errors), server_cpu,
              server_cpu >= 0 && requests > 0 ? server_cpu * 1e6 / static_cast<double>(requests) : -1.0);
  return errors == 0 && connect_errors == 0 ? 0 : 1;
}
