#include "peer_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace perf_echo {

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) o.port = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) o.threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--threads N]\n", argv[0]);
      std::exit(2);
    }
  }
  if (o.threads < 1) {
    std::fprintf(stderr, "%s: --threads must be at least 1\n", argv[0]);
    std::exit(2);
  }
  return o;
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

namespace {

int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4096) != 0) {
    std::perror("listen_on");
    std::exit(1);
  }
  return fd;
}

}  // namespace

std::vector<int> listen_all(options& o, int count) {
  std::vector<int> fds;
  for (int i = 0; i < count; i++) {
    fds.push_back(listen_on(o.port));
    if (o.port == 0) {
      sockaddr_in addr{};
      socklen_t len = sizeof addr;
      getsockname(fds[0], reinterpret_cast<sockaddr*>(&addr), &len);
      o.port = ntohs(addr.sin_port);
    }
  }
  return fds;
}

void init_ring(io_uring& ring, unsigned entries) {
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;
  int err = io_uring_queue_init_params(entries, &ring, &p);
  if (err != 0) {
    std::fprintf(stderr, "io_uring_queue_init_params: %s\n", std::strerror(-err));
    std::exit(1);
  }
}

void run_threads(const options& o, const char* name, const std::function<void(int)>& body) {
  std::printf("listening on 127.0.0.1:%d threads %d (%s)\n", o.port, o.threads, name);
  std::fflush(stdout);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.threads; i++) threads.emplace_back(body, i);
  for (auto& t : threads) t.join();
}

void serve_each_listener(options& o, const char* name, const std::function<void(int)>& serve) {
  std::vector<int> listeners = listen_all(o, o.threads);
  run_threads(o, name, [&](int i) { serve(listeners[i]); });
}

io_uring_sqe* get_sqe(io_uring& ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  while (sqe == nullptr) {
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

}  // namespace perf_echo
