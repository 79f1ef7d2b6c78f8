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

// A recv on `fd`, marked as owned by `owner` (0: not owned) as io_object
// marks its sockets' operations.
void prep_recv(backend_under_test& t, uint64_t user_data, int fd, char* buf, size_t len, uint32_t owner) {
  io_uring_sqe* s = t.sqe(user_data);
  io_uring_prep_recv(s, fd, buf, len, 0);
  if (owner != 0) epoll_backend::owned_by(s, owner);
}

// Sleeps in the backend's epoll wait for `ms`: what a carrier's loop does
// between its fibers' waits, and where epoll reports events nobody waits for.
void idle_turn(backend_under_test& t, int ms) {
  static __kernel_timespec ts;
  ts = {0, ms * 1000000LL};
  io_uring_prep_timeout(t.sqe(0), &ts, 0, 0);
  t.collect(true);
}

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

// Before: an operation that completed at once was taken for one leaving an
// fd wait, and the count of fd waits went below zero (a size_t: it
// wrapped), so that every collect() that could not sleep made an epoll
// wait system call for nothing.
TEST(EpollBackendTest, OperationsThatCompleteAtOnceLeaveNoFdWaitCounted) {
  backend_under_test t;
  socket_pair s;
  char buf[8];
  for (uint64_t i = 1; i <= 3; i++) {
    ASSERT_EQ(::write(s.b, "abc", 3), 3);
    io_uring_prep_recv(t.sqe(i), s.a, buf, sizeof buf, 0);
    t.collect(false);
    EXPECT_EQ(t.results[i], 3);
    io_uring_prep_send(t.sqe(10 + i), s.a, "x", 1, 0);
    t.collect(false);
    EXPECT_EQ(t.results[10 + i], 1);
  }
  EXPECT_EQ(t.b.fd_waits(), 0u);
  io_uring_prep_recv(t.sqe(20), s.a, buf, sizeof buf, 0);
  t.collect(false);
  EXPECT_EQ(t.b.fd_waits(), 1u) << "nothing to read: it waits";
  ASSERT_EQ(::write(s.b, "abc", 3), 3);
  EXPECT_EQ(t.wait_for(20), 3);
  EXPECT_EQ(t.b.fd_waits(), 0u);
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

TEST(EpollBackendTest, AnOwnedSocketIsRegisteredOnceAndAnotherIsArmedForEachWait) {
  for (const bool owned : {true, false}) {
    SCOPED_TRACE(owned ? "owned" : "not owned");
    backend_under_test t;
    socket_pair s;
    const uint32_t owner = owned ? epoll_backend::new_owner_key() : 0;
    char buf[8];
    for (int i = 0; i < 20; i++) {
      prep_recv(t, 10 + i, s.a, buf, sizeof buf, owner);
      t.collect(false);
      EXPECT_EQ(t.results.count(10 + i), 0u) << "nothing to read: it waits";
      ASSERT_EQ(::write(s.b, "x", 1), 1);
      EXPECT_EQ(t.wait_for(10 + i), 1);
    }
    if (owned) {
      EXPECT_EQ(t.b.registrations(), 1u) << "edge-triggered, registered by the first wait";
    } else {
      EXPECT_GE(t.b.registrations(), 20u) << "one-shot, armed by each wait";
    }
  }
}

TEST(EpollBackendTest, AnOwnedFdsNumberReusedWhileItsOldFileLivesOnIsWatchedAfresh) {
  backend_under_test t;
  socket_pair old_pair;
  char buf[8];
  prep_recv(t, 1, old_pair.a, buf, sizeof buf, epoll_backend::new_owner_key());
  t.collect(false);
  ASSERT_EQ(::write(old_pair.b, "a", 1), 1);
  EXPECT_EQ(t.wait_for(1), 1);
  // The owner closes its fd while a dup elsewhere keeps the file, and so
  // its edge-triggered registration, alive; a new file gets the number.
  const int number = old_pair.a;
  const int keeps_old_file = ::dup(number);
  ASSERT_GE(keeps_old_file, 0);
  ::close(number);
  old_pair.a = -1;
  socket_pair fresh;
  ASSERT_EQ(::dup2(fresh.a, number), number);
  prep_recv(t, 2, number, buf, sizeof buf, epoll_backend::new_owner_key());
  t.collect(false);
  EXPECT_EQ(t.results.count(2), 0u) << "nothing to read: it waits";
  ASSERT_EQ(::write(old_pair.b, "old", 3), 3);  // reported by the old file's registration
  t.collect(false);
  EXPECT_EQ(t.results.count(2), 0u) << "the old file's data is not this fd's";
  ASSERT_EQ(::write(fresh.b, "new", 3), 3);
  EXPECT_EQ(t.wait_for(2), 3) << "the new owner's wait registered the new file";
  EXPECT_EQ(std::string(buf, 3), "new");
  ::close(number);
  ::close(keeps_old_file);
}

TEST(EpollBackendTest, AnOwnedFdThatWakesTheCarrierForNobodyIsDroppedAndTheNextWaitRegistersItAgain) {
  backend_under_test t;
  socket_pair s, other;
  const uint32_t owner = epoll_backend::new_owner_key();
  // A wait on another socket for the whole test, so that every collect
  // asks epoll, as a carrier with fibers waiting does.
  char other_buf[8];
  prep_recv(t, 99, other.a, other_buf, sizeof other_buf, epoll_backend::new_owner_key());
  t.collect(false);
  char buf[128];
  prep_recv(t, 1, s.a, buf, sizeof buf, owner);
  t.collect(false);
  ASSERT_EQ(::write(s.b, "a", 1), 1);
  EXPECT_EQ(t.wait_for(1), 1);
  EXPECT_EQ(t.b.registrations(), 2u);
  // Each write is an edge. Collected by a busy carrier (a wait that does
  // not sleep), it costs nothing and is not counted: a saturated socket is
  // read without waiting.
  for (int i = 0; i < 20; i++) {
    ASSERT_EQ(::write(s.b, "b", 1), 1);
    t.collect(false);
  }
  EXPECT_EQ(t.b.registrations(), 2u);
  // Reported by a wait that could sleep, nobody here waiting: its fiber is
  // elsewhere.
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(::write(s.b, "b", 1), 1);
    idle_turn(t, 1);
  }
  EXPECT_EQ(t.b.registrations(), 2u) << "woken 3 times for nobody: kept";
  ASSERT_EQ(::write(s.b, "c", 1), 1);
  idle_turn(t, 1);
  EXPECT_EQ(t.b.registrations(), 3u) << "the 4th: removed (EPOLL_CTL_DEL)";
  ASSERT_EQ(::write(s.b, "d", 1), 1);
  idle_turn(t, 1);
  EXPECT_EQ(t.b.registrations(), 3u);
  prep_recv(t, 2, s.a, buf, sizeof buf, owner);
  EXPECT_EQ(t.wait_for(2), 25) << "tried before waiting: what came meanwhile is read";
  EXPECT_EQ(std::string(buf + 22, 3), "bcd");
  // A poll on the fd: it checks, waits (registered again), and after an
  // edge checks again.
  io_uring_sqe* poll = t.sqe(3);
  io_uring_prep_poll_add(poll, s.a, POLLIN);
  epoll_backend::owned_by(poll, owner);
  t.collect(false);
  EXPECT_EQ(t.results.count(3), 0u);
  EXPECT_EQ(t.b.registrations(), 4u);
  ASSERT_EQ(::write(s.b, "e", 1), 1);
  EXPECT_EQ(t.wait_for(3) & POLLIN, POLLIN);
  prep_recv(t, 4, s.a, buf, sizeof buf, owner);
  EXPECT_EQ(t.wait_for(4), 1);
  EXPECT_EQ(t.b.registrations(), 4u);
  ASSERT_EQ(::write(other.b, "z", 1), 1);
  EXPECT_EQ(t.wait_for(99), 1);
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
