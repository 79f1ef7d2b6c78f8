// The epoll backend (runtime/io/epoll_backend.h) on its own, without a
// runtime: each kind of operation answers as io_uring would -- at once
// when it can, after readiness when it must wait, on a worker for a regular
// file -- and deadlines, removals and cancellations give io_uring's results.
#include "runtime/io/epoll_backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <algorithm>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/unix_socket_pair.h"
#include "tests/testing/threads.h"

namespace {

using bobbin::internal::epoll_backend;

struct backend_under_test {
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_backend b;
  std::map<uint64_t, int> results;  // user_data -> res

  explicit backend_under_test(unsigned workers = 2) { EXPECT_TRUE(b.init(64, wake, workers).ok()); }
  ~backend_under_test() { ::close(wake); }

  io_uring_sqe* sqe(uint64_t user_data) {
    io_uring_sqe* s = b.try_get_sqe();
    EXPECT_NE(s, nullptr);
    return s != nullptr ? (io_uring_sqe_set_data64(s, user_data), s) : nullptr;
  }
  // Collects (sleeping with `wait`) and records every completion.
  void collect(bool wait) {
    b.collect(wait);
    b.reap([this](const epoll_backend::cqe& c) { results[c.user_data] = c.res; });
  }
  // Collects until `user_data` has completed, or 5 s pass.
  int wait_for(uint64_t user_data) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (results.count(user_data) == 0 && std::chrono::steady_clock::now() < until) {
      // A timer that reports nothing (user_data 0) bounds each sleep, so a
      // completion that never comes fails the test instead of hanging it.
      static __kernel_timespec tick{0, 100000000};
      io_uring_prep_timeout(sqe(0), &tick, 0, 0);
      collect(true);
    }
    return results.count(user_data) != 0 ? results[user_data] : -99999;
  }
};

using socket_pair = bobbin::testing::unix_socket_pair;

__kernel_timespec after_ms(int ms) { return {ms / 1000, (ms % 1000) * 1000000LL}; }

TEST(EpollBackendTest, ARecvWithDataCompletesAtOnceAndOneWithoutWaitsForIt) {
  backend_under_test t;
  socket_pair s;
  ASSERT_EQ(::write(s.b, "abc", 3), 3);
  char buf[8];
  io_uring_prep_recv(t.sqe(1), s.a, buf, sizeof buf, 0);
  t.b.submit();
  t.collect(false);
  EXPECT_EQ(t.results[1], 3);
  char buf2[8];
  io_uring_prep_recv(t.sqe(2), s.a, buf2, sizeof buf2, 0);
  t.collect(false);
  EXPECT_EQ(t.results.count(2), 0u) << "nothing to read: it waits";
  EXPECT_EQ(t.b.operations_waiting(), 1u);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(::write(s.b, "hello", 5), 5);
  });
  EXPECT_EQ(t.wait_for(2), 5);
  EXPECT_EQ(std::string(buf2, 5), "hello");
  writer.join();
  EXPECT_EQ(t.b.operations_waiting(), 0u);
}

TEST(EpollBackendTest, AReaderAndAWriterWaitOnOneSocketTogether) {
  backend_under_test t;
  socket_pair s;
  // Fill the send buffer so that a send must wait too.
  ::fcntl(s.a, F_SETFL, O_NONBLOCK);
  std::vector<char> big(1 << 16, 'x');
  while (::send(s.a, big.data(), big.size(), 0) > 0) {
  }
  char in[4];
  io_uring_prep_recv(t.sqe(1), s.a, in, sizeof in, 0);
  io_uring_prep_send(t.sqe(2), s.a, "y", 1, MSG_NOSIGNAL);
  t.collect(false);
  EXPECT_EQ(t.b.operations_waiting(), 2u);
  ASSERT_EQ(::write(s.b, "ping", 4), 4);
  EXPECT_EQ(t.wait_for(1), 4);
  EXPECT_EQ(t.results.count(2), 0u) << "the send still has no room";
  // Drain the peer: room to send.
  std::vector<char> sink(1 << 20);
  while (::recv(s.b, sink.data(), sink.size(), MSG_DONTWAIT) > 0) {
  }
  EXPECT_EQ(t.wait_for(2), 1);
}

TEST(EpollBackendTest, ALinkedDeadlineEndsAWaitAsIoUringReportsIt) {
  backend_under_test t;
  socket_pair s;
  char buf[4];
  io_uring_sqe* r = t.sqe(1);
  io_uring_prep_recv(r, s.a, buf, sizeof buf, 0);
  r->flags |= IOSQE_IO_LINK;
  __kernel_timespec ts = after_ms(30);
  io_uring_prep_link_timeout(t.sqe(2), &ts, 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(t.wait_for(1), -ECANCELED);
  EXPECT_EQ(t.wait_for(2), -ETIME);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_GE(ms.count(), 29);
  EXPECT_LT(ms.count(), 1000);
  // An operation done before its deadline: the link timeout reports -ECANCELED.
  ASSERT_EQ(::write(s.b, "x", 1), 1);
  io_uring_sqe* r2 = t.sqe(3);
  io_uring_prep_recv(r2, s.a, buf, sizeof buf, 0);
  r2->flags |= IOSQE_IO_LINK;
  io_uring_prep_link_timeout(t.sqe(4), &ts, 0);
  EXPECT_EQ(t.wait_for(3), 1);
  EXPECT_EQ(t.wait_for(4), -ECANCELED);
}

TEST(EpollBackendTest, TimeoutsFireInOrderAndARemovedOneReportsCancelled) {
  backend_under_test t;
  __kernel_timespec late = after_ms(60), early = after_ms(20), never = after_ms(100000);
  io_uring_prep_timeout(t.sqe(1), &late, 0, 0);
  io_uring_prep_timeout(t.sqe(2), &early, 0, 0);
  io_uring_prep_timeout(t.sqe(3), &never, 0, 0);
  t.b.submit();
  EXPECT_EQ(t.wait_for(2), -ETIME);
  EXPECT_EQ(t.results.count(1), 0u);
  EXPECT_EQ(t.wait_for(1), -ETIME);
  io_uring_prep_timeout_remove(t.sqe(4), 3, 0);
  EXPECT_EQ(t.wait_for(4), 0);
  EXPECT_EQ(t.results[3], -ECANCELED);
  io_uring_prep_timeout_remove(t.sqe(5), 3, 0);
  EXPECT_EQ(t.wait_for(5), -ENOENT) << "already gone";
}

TEST(EpollBackendTest, CancelByUserDataAndByFd) {
  backend_under_test t;
  socket_pair s, s2;
  char buf[4];
  io_uring_prep_recv(t.sqe(1), s.a, buf, sizeof buf, 0);
  io_uring_prep_poll_add(t.sqe(2), s2.a, POLLIN);
  io_uring_prep_poll_add(t.sqe(3), s2.a, POLLIN);
  t.collect(false);
  io_uring_prep_cancel64(t.sqe(10), 1, 0);
  EXPECT_EQ(t.wait_for(10), 0);
  EXPECT_EQ(t.results[1], -ECANCELED);
  io_uring_prep_cancel_fd(t.sqe(11), s2.a, IORING_ASYNC_CANCEL_ALL);
  EXPECT_EQ(t.wait_for(11), 2) << "both polls on the fd";
  EXPECT_EQ(t.results[2], -ECANCELED);
  EXPECT_EQ(t.results[3], -ECANCELED);
  io_uring_prep_cancel64(t.sqe(12), 1, 0);
  EXPECT_EQ(t.wait_for(12), -ENOENT);
  EXPECT_EQ(t.b.operations_waiting(), 0u);
}

TEST(EpollBackendTest, AClosedAndReusedFdNumberIsWatchedAfresh) {
  backend_under_test t;
  char buf[4];
  int reused = -1;
  {
    socket_pair s;
    io_uring_prep_recv(t.sqe(1), s.a, buf, sizeof buf, 0);
    t.collect(false);
    io_uring_prep_cancel_fd(t.sqe(2), s.a, IORING_ASYNC_CANCEL_ALL);
    EXPECT_EQ(t.wait_for(2), 1);
    reused = s.a;
  }
  socket_pair again;  // most likely the same numbers
  const int fd = again.a == reused ? again.a : again.b == reused ? again.b : again.a;
  const int peer = fd == again.a ? again.b : again.a;
  io_uring_prep_recv(t.sqe(3), fd, buf, sizeof buf, 0);
  t.collect(false);
  ASSERT_EQ(::write(peer, "new", 3), 3);
  EXPECT_EQ(t.wait_for(3), 3);
}

TEST(EpollBackendTest, ConnectAndAcceptOnBlockingSocketsLeaveThemBlocking) {
  backend_under_test t;
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof at;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&at), &len);
  io_uring_prep_accept(t.sqe(1), listener, nullptr, nullptr, SOCK_CLOEXEC);
  t.collect(false);
  EXPECT_EQ(t.results.count(1), 0u) << "nobody connected yet";
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  io_uring_prep_connect(t.sqe(2), client, reinterpret_cast<sockaddr*>(&at), sizeof at);
  EXPECT_EQ(t.wait_for(2), 0);
  const int accepted = t.wait_for(1);
  ASSERT_GE(accepted, 0);
  EXPECT_EQ(::fcntl(listener, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_EQ(::fcntl(client, F_GETFL) & O_NONBLOCK, 0);
  ::close(accepted);
  ::close(client);
  ::close(listener);
}

TEST(EpollBackendTest, RegularFilesRunOnAtMostTheBoundOfWorkers) {
  backend_under_test t(/*workers=*/2);
  char path[] = "/tmp/bobbin_epoll_backend_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  std::vector<std::vector<char>> data(40, std::vector<char>(4096, 'z'));
  for (int i = 0; i < 40; i++) {
    io_uring_prep_write(t.sqe(100 + i), fd, data[i].data(), 4096, static_cast<uint64_t>(i) * 4096);
    io_uring_prep_fsync(t.sqe(200 + i), fd, 0);
    t.b.submit();
  }
  t.b.submit();
  int most = 0;
  for (int i = 0; i < 40; i++) {
    EXPECT_EQ(t.wait_for(100 + i), 4096);
    EXPECT_EQ(t.wait_for(200 + i), 0);
    int n = 0;
    for (const auto& [tid, name] : bobbin::testing::threads_by_tid()) n += name == "bobbin-io";
    most = std::max(most, n);
  }
  EXPECT_GE(most, 1);
  EXPECT_LE(most, 2);
  char back[4096];
  io_uring_prep_read(t.sqe(300), fd, back, sizeof back, 39 * 4096);
  EXPECT_EQ(t.wait_for(300), 4096);
  EXPECT_EQ(back[4095], 'z');
  ::close(fd);
}

TEST(EpollBackendTest, UnknownOperationsCompleteWithEinval) {
  backend_under_test t;
  io_uring_sqe* s = t.sqe(1);
  io_uring_prep_nop(s);
  s->opcode = IORING_OP_MADVISE;
  EXPECT_EQ(t.wait_for(1), -EINVAL);
}

}  // namespace
