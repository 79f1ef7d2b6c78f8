// tests/soak/soak_load: the client side of scripts/soak. C connections in a
// closed loop against an echo or HTTP server for a fixed time, with a share
// of requests cut off mid-way by a reset (half the request sent, then
// close() with SO_LINGER 0, so the server sees ECONNRESET), each followed by
// a fresh connection. Plain epoll, independent of bobbin, like
// perf/load/echo_load, which it does not replace: that one measures, this
// one checks that a server stays whole.
//
// Checks every reply: an echo must come back byte for byte; an HTTP
// response must be "HTTP/1.1 200" with a Content-Length body. Anything else
// (a wrong byte, a non-200, an EOF or reset the client did not cause, a
// failed reconnect) is an error.
//
// Output: a JSON line every --report-every seconds with that interval's
// requests, rate and latency percentiles and the running error and reset
// counts, then a final line with "final": true. Exit status 0 when there
// were no errors.
//
// Run: soak_load --port 7000 --protocol echo --connections 10000 --seconds 60
//                --report-every 10 --reset-permille 5
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  int port = 0;
  std::string protocol = "echo";
  int connections = 100;
  int size = 64;
  double seconds = 60;
  double report_every = 10;
  int reset_permille = 5;
};

struct conn {
  int fd = -1;
  std::string request;   // what this request sends
  size_t sent = 0;
  std::string received;  // reply bytes so far
  size_t need = 0;       // HTTP: whole response size once the head is parsed
  clock_type::time_point started;
};

struct totals {
  uint64_t errors = 0;
  uint64_t resets = 0;
  uint64_t connect_errors = 0;
  std::string first_error;
};

class soak {
 public:
  explicit soak(const options& o) : o_(o), conns_(static_cast<size_t>(o.connections)), rng_(42) {
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
    inet_pton(AF_INET, "127.0.0.1", &addr_.sin_addr);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
  }

  int run() {
    for (size_t i = 0; i < conns_.size(); i++) open(i);
    for (size_t i = 0; i < conns_.size(); i++) {
      if (conns_[i].fd >= 0) start_request(i);
    }
    const auto begin = clock_type::now();
    const auto end = begin + std::chrono::duration<double>(o_.seconds);
    auto next_report = begin + std::chrono::duration<double>(o_.report_every);
    std::vector<epoll_event> events(1024);
    while (clock_type::now() < end) {
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 20);
      for (int e = 0; e < n; e++) on_event(events[e].data.u32, events[e].events);
      if (clock_type::now() >= next_report) {
        report(std::chrono::duration<double>(clock_type::now() - begin).count(), false);
        next_report += std::chrono::duration<double>(o_.report_every);
      }
    }
    report(std::chrono::duration<double>(clock_type::now() - begin).count(), true);
    for (conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    return t_.errors + t_.connect_errors == 0 ? 0 : 1;
  }

 private:
  void error(size_t i, const std::string& what) {
    t_.errors++;
    if (t_.first_error.empty()) t_.first_error = what;
    drop(i);
    open(i);  // keep the load at C connections
    if (conns_[i].fd >= 0) start_request(i);
  }

  void drop(size_t i) {
    if (conns_[i].fd >= 0) close(conns_[i].fd);
    conns_[i].fd = -1;
  }

  void open(size_t i) {
    conn& c = conns_[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) != 0) {
      if (fd >= 0) close(fd);
      t_.connect_errors++;
      if (t_.first_error.empty()) t_.first_error = std::string("connect: ") + std::strerror(errno);
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    c.fd = fd;
  }

  void start_request(size_t i) {
    conn& c = conns_[i];
    if (o_.protocol == "echo") {
      c.request.resize(static_cast<size_t>(o_.size));
      const uint64_t tag = ++sequence_;
      for (size_t k = 0; k < c.request.size(); k++) c.request[k] = static_cast<char>('a' + (tag + k) % 26);
    } else {
      c.request = "GET / HTTP/1.1\r\nHost: soak\r\n\r\n";
    }
    c.sent = 0;
    c.received.clear();
    c.need = 0;
    c.started = clock_type::now();
    if (std::uniform_int_distribution<int>(0, 999)(rng_) < o_.reset_permille) {
      // Half a request, then a reset: the server is mid-read when it comes.
      (void)send(c.fd, c.request.data(), c.request.size() / 2, MSG_NOSIGNAL);
      linger l{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      drop(i);
      t_.resets++;
      open(i);
      if (c.fd >= 0) start_request(i);
      return;
    }
    while (c.sent < c.request.size()) {
      ssize_t n = send(c.fd, c.request.data() + c.sent, c.request.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      // A small request into an empty socket buffer does not block.
      return error(i, std::string("send: ") + (n < 0 ? std::strerror(errno) : "0"));
    }
  }

  // True when the reply in c.received is whole; false to wait for more.
  // Sets `bad` when it can never be right.
  bool reply_complete(conn& c, std::string* bad) {
    if (o_.protocol == "echo") {
      size_t n = std::min(c.received.size(), c.request.size());
      if (std::memcmp(c.received.data(), c.request.data(), n) != 0) *bad = "echo came back wrong";
      else if (c.received.size() > c.request.size()) *bad = "more echoed than sent";
      return c.received.size() >= c.request.size();
    }
    if (c.need == 0) {
      size_t end = c.received.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.received.size() > 16384) *bad = "response head too large";
        return false;
      }
      std::string_view head(c.received.data(), end);
      if (head.substr(0, 13) != "HTTP/1.1 200 ") {
        *bad = "not a 200: " + std::string(head.substr(0, head.find('\r')));
        return false;
      }
      size_t cl = head.find("\r\nContent-Length: ");
      if (cl == std::string_view::npos) {
        *bad = "no Content-Length";
        return false;
      }
      c.need = end + 4 + std::strtoull(head.data() + cl + 18, nullptr, 10);
    }
    if (c.received.size() > c.need) *bad = "bytes after the response";
    return c.received.size() >= c.need;
  }

  void on_event(uint32_t index, uint32_t /*events*/) {
    const size_t i = index;
    conn& c = conns_[i];
    if (c.fd < 0) return;  // dropped earlier in this batch
    char buf[16384];
    for (;;) {
      ssize_t r = recv(c.fd, buf, sizeof buf, 0);
      if (r > 0) {
        c.received.append(buf, static_cast<size_t>(r));
        std::string bad;
        bool done = reply_complete(c, &bad);
        if (!bad.empty()) return error(i, bad);
        if (done) {
          latencies_ns_.push_back(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - c.started).count()));
          start_request(i);
          return;
        }
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
      return error(i, r == 0 ? "server closed a connection mid-request" : std::string("recv: ") + std::strerror(errno));
    }
  }

  static std::string json_safe(std::string s) {
    for (char& c : s) {
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = '\'';
    }
    return s;
  }

  void report(double t, bool final) {
    std::sort(latencies_ns_.begin(), latencies_ns_.end());
    auto pct = [&](double p) {
      if (latencies_ns_.empty()) return 0.0;
      return static_cast<double>(latencies_ns_[static_cast<size_t>(p * static_cast<double>(latencies_ns_.size() - 1))]) / 1000.0;
    };
    const double span = t - last_report_t_;
    std::printf(
        "{\"t\": %.1f, \"final\": %s, \"requests\": %zu, \"rps\": %.0f, \"p50_us\": %.0f, \"p99_us\": %.0f, "
        "\"errors\": %llu, \"connect_errors\": %llu, \"resets\": %llu, \"first_error\": \"%s\"}\n",
        t, final ? "true" : "false", latencies_ns_.size(), span > 0 ? static_cast<double>(latencies_ns_.size()) / span : 0,
        pct(0.50), pct(0.99), static_cast<unsigned long long>(t_.errors),
        static_cast<unsigned long long>(t_.connect_errors), static_cast<unsigned long long>(t_.resets),
        json_safe(t_.first_error).c_str());
    std::fflush(stdout);
    latencies_ns_.clear();
    last_report_t_ = t;
  }

  options o_;
  sockaddr_in addr_{};
  int ep_ = -1;
  std::vector<conn> conns_;
  std::vector<uint64_t> latencies_ns_;
  std::mt19937 rng_;
  uint64_t sequence_ = 0;
  totals t_;
  double last_report_t_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "soak_load: %s needs a value\n", a.c_str());
      return 2;
    }
    const char* v = argv[++i];
    if (a == "--port") o.port = std::atoi(v);
    else if (a == "--protocol") o.protocol = v;
    else if (a == "--connections") o.connections = std::atoi(v);
    else if (a == "--size") o.size = std::atoi(v);
    else if (a == "--seconds") o.seconds = std::atof(v);
    else if (a == "--report-every") o.report_every = std::atof(v);
    else if (a == "--reset-permille") o.reset_permille = std::atoi(v);
    else {
      std::fprintf(stderr, "usage: soak_load --port N [--protocol echo|http] [--connections C] [--size S] "
                           "[--seconds T] [--report-every R] [--reset-permille P]\n");
      return 2;
    }
  }
  // One descriptor per connection, and the reconnects: raise the soft limit.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(o.connections) + 64) {
    std::fprintf(stderr, "soak_load: %d connections need more descriptors than RLIMIT_NOFILE allows (%llu)\n",
                 o.connections, static_cast<unsigned long long>(rl.rlim_cur));
    return 2;
  }
  if (o.port <= 0 || (o.protocol != "echo" && o.protocol != "http") || o.connections <= 0 || o.size <= 1) {
    std::fprintf(stderr, "soak_load: bad arguments\n");
    return 2;
  }
  return soak(o).run();
}
