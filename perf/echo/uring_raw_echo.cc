// perf/echo/uring_raw_echo: the echo protocol as a hand-written io_uring
// callback loop, the limit the other models are measured against.
//
// One ring and one SO_REUSEPORT listener per thread. A multishot accept
// delivers connections; each connection has one operation in flight at a
// time (recv, then send of what arrived, then recv again). user_data holds
// the connection pointer with the operation kind in its low bit. A loop turn
// is one io_uring_submit_and_wait(): everything prepared while handling the
// previous completions goes to the kernel in that one call.
//
// Run: uring_raw_echo --port 7000 --threads 1
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

#include "peer_common.h"

namespace {

using namespace perf_echo;

struct connection {
  explicit connection(int f) : fd(f) {}
  int fd;
  unsigned sent = 0;     // bytes of the current echo already written
  unsigned pending = 0;  // bytes of the current echo to write
  char buf[kBufferSize];
};

constexpr uint64_t kAccept = 1;  // user_data of the multishot accept
constexpr uint64_t kSendBit = 1;  // low bit of a connection's user_data

void prep_accept(io_uring& ring, int listener) {
  io_uring_sqe* sqe = get_sqe(ring);
  io_uring_prep_multishot_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, kAccept);
}

void prep_recv(io_uring& ring, connection* c) {
  io_uring_sqe* sqe = get_sqe(ring);
  io_uring_prep_recv(sqe, c->fd, c->buf, kBufferSize, 0);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(c));
}

void prep_send(io_uring& ring, connection* c) {
  io_uring_sqe* sqe = get_sqe(ring);
  io_uring_prep_send(sqe, c->fd, c->buf + c->sent, c->pending - c->sent, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(c) | kSendBit);
}

void finish(connection* c) {
  close(c->fd);
  delete c;
}

void serve(int listener) {
  io_uring ring;
  init_ring(ring);
  prep_accept(ring, listener);
  run_completion_loop(ring, [&](io_uring_cqe* cqe) {
    uint64_t data = cqe->user_data;
    int res = cqe->res;
    if (data == kAccept) {
      if (res >= 0) prep_recv(ring, new connection(res));
      // The multishot accept ends on errors (EMFILE, ...): re-arm it.
      if (!(cqe->flags & IORING_CQE_F_MORE)) prep_accept(ring, listener);
      return;
    }
    auto* c = reinterpret_cast<connection*>(data & ~kSendBit);
    if (data & kSendBit) {
      if (res <= 0) {
        finish(c);
        return;
      }
      c->sent += static_cast<unsigned>(res);
      if (c->sent < c->pending) prep_send(ring, c);  // short write: send the rest
      else prep_recv(ring, c);
      return;
    }
    if (res <= 0) {  // the peer closed, or an error
      finish(c);
      return;
    }
    c->sent = 0;
    c->pending = static_cast<unsigned>(res);
    prep_send(ring, c);
  });
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse_options(argc, argv);
  raise_fd_limit();
  serve_each_listener(o, "raw io_uring loop", serve);
}
