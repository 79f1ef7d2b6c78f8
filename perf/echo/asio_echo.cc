// perf/echo/asio_echo: the echo protocol with standalone Asio and C++20
// coroutines (co_spawn / awaitable / use_awaitable), the way Asio's own
// examples write it. One io_context per thread (concurrency hint 1) with its
// own SO_REUSEPORT acceptor.
//
// Built twice by perf/meson.build: asio_epoll_echo (Asio's default reactor)
// and asio_uring_echo (ASIO_HAS_IO_URING + ASIO_DISABLE_EPOLL: every socket
// operation goes through Asio's io_uring service).
//
// Run: asio_epoll_echo --port 7000 --threads 1
#include <asio.hpp>
#include <cstdio>
#include <memory>
#include <vector>

#include "peer_common.h"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

awaitable<void> echo(tcp::socket socket) {
  char buf[perf_echo::kBufferSize];
  asio::error_code ec;
  for (;;) {
    std::size_t n = co_await socket.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(socket, asio::buffer(buf, n), asio::redirect_error(use_awaitable, ec));
    if (ec) break;
  }
}

awaitable<void> accept_loop(tcp::acceptor& acceptor) {
  for (;;) {
    asio::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) continue;  // EMFILE, ECONNABORTED: the connection stays queued
    asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
  }
}

// One event loop: an io_context and its listening acceptor.
struct loop {
  asio::io_context ctx{1};
  tcp::acceptor acceptor{ctx};

  explicit loop(int port) {
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.set_option(reuse_port(true));
    acceptor.bind(endpoint);
    acceptor.listen(4096);
    asio::co_spawn(ctx, accept_loop(acceptor), asio::detached);
  }
};

}  // namespace

int main(int argc, char** argv) {
  perf_echo::options o = perf_echo::parse_options(argc, argv);
  perf_echo::raise_fd_limit();
#if defined(ASIO_HAS_IO_URING) && defined(ASIO_DISABLE_EPOLL)
  const char* name = "Asio C++20 coroutines, io_uring backend";
#else
  const char* name = "Asio C++20 coroutines, epoll backend";
#endif
  std::vector<std::unique_ptr<loop>> loops;
  for (int i = 0; i < o.threads; i++) {
    loops.push_back(std::make_unique<loop>(o.port));
    if (o.port == 0) o.port = loops[0]->acceptor.local_endpoint().port();  // the rest share it
  }
  run_threads(o, name, [&](int i) { loops[i]->ctx.run(); });
}
