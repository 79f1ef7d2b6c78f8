// Plain libc calls made on fibers: they park the fiber instead of blocking
// the carrier, with the kernel's semantics (return values, errno, partial
// transfers, O_NONBLOCK, SO_RCVTIMEO, revents), and resume on the carrier
// they parked on.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bobbin/blocking_calls.h"
#include "bobbin/fiber.h"
#include "bobbin/pinning.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/latch.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/unix_socket_pair.h"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Runs `body` on a fiber of a fresh runtime with `carriers` carriers and
// returns how many intercepted calls parked: the tests below check both the
// kernel's semantics and that their calls took the fiber path (or, for the
// calls that must not block, that they did not).
template <class F>
uint64_t parks_on(unsigned carriers, F&& body) {
  auto rt = bobbin::runtime::start({.carriers = carriers}).value();
  rt->spawn(std::forward<F>(body)).join();
  return rt->stats().intercepted_parks;
}

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

using socket_pair = bobbin::testing::unix_socket_pair;

bool env_turns_it_off() {
  const char* v = std::getenv("BOBBIN_INTERCEPT");
  return v != nullptr && std::strcmp(v, "0") == 0;
}

TEST(InterceptTest, ProcessWideSwitchIsOnByDefault) {
  if (env_turns_it_off()) GTEST_SKIP() << "run with BOBBIN_INTERCEPT=0 (the intercept_off test)";
  EXPECT_TRUE(bobbin::blocking_calls_intercepted());
}

// tests/meson.build runs this binary a second time with BOBBIN_INTERCEPT=0
// and only this test.
TEST(InterceptTest, EnvironmentTurnsItOffForTheProcess) {
  if (!env_turns_it_off()) GTEST_SKIP() << "only meaningful with BOBBIN_INTERCEPT=0";
  EXPECT_FALSE(bobbin::blocking_calls_intercepted());
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  rt->spawn([] { ::usleep(1000); }).join();
  EXPECT_EQ(rt->stats().intercepted_parks, 0u);
}

// 200 fibers each sleeping 50 ms with the libc call, then 200 in
// std::this_thread::sleep_for and clock_nanosleep, on 2 carriers: the
// sleeps overlap. That is shown by how many sleepers are inside the call at
// once, not by a bound on the total time, which spawn latency sets (2.4-3.4
// ms a fiber under ThreadSanitizer: 2,086 ms against a 2,000 ms bound on a
// loaded machine). Every sleeper starts from one latch, once all exist; a
// usleep that blocked its carrier would let at most the 2 carriers and
// their 2 spares sleep at once, so a peak of 50 (of 200) cannot come from
// blocking, and leaves a loaded carrier 50 ms to start the rest.
TEST(InterceptTest, ManyFibersInUsleepShareTwoCarriers) {
  std::atomic<int> inside{0}, peak{0};
  auto sleep_counted = [&](auto&& sleep) {
    const int now_inside = inside.fetch_add(1) + 1;
    int p = peak.load();
    while (now_inside > p && !peak.compare_exchange_weak(p, now_inside)) {
    }
    sleep();
    inside.fetch_sub(1);
  };
  auto run_together = [&](std::vector<std::function<void()>> sleeps) {
    peak = 0;
    bobbin::latch go(1);
    std::vector<bobbin::fiber<void>> fs;
    for (auto& sleep : sleeps) {
      fs.push_back(bobbin::spawn([&, sleep] {
        go.wait();
        sleep_counted(sleep);
      }));
    }
    go.count_down();
    for (auto& f : fs) f.join();
    return peak.load();
  };
  int usleep_peak = 0, other_peak = 0;
  EXPECT_GE(parks_on(2, [&] {
    usleep_peak = run_together(std::vector<std::function<void()>>(200, [] { ::usleep(50000); }));
    std::vector<std::function<void()>> others;
    for (int i = 0; i < 100; i++) {
      others.push_back([] { std::this_thread::sleep_for(50ms); });  // nanosleep via libstdc++
      others.push_back([] {
        timespec ts{0, 50000000};
        EXPECT_EQ(::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr), 0);
      });
    }
    other_peak = run_together(std::move(others));
    return 0;
  }), 400u);  // every sleep parked
  EXPECT_GE(usleep_peak, 50);
  EXPECT_GE(other_peak, 50);
}

TEST(InterceptTest, SleepsLastAtLeastTheirTime) {
  EXPECT_GT(parks_on(2, [] {
    auto t = clock_type::now();
    ::usleep(30000);
    EXPECT_GE(ms_since(t), 30.0);
    t = clock_type::now();
    timespec ts{0, 25000000};
    EXPECT_EQ(::nanosleep(&ts, nullptr), 0);
    EXPECT_GE(ms_since(t), 25.0);
    timespec bad{0, 2000000000};
    errno = 0;
    EXPECT_EQ(::nanosleep(&bad, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
    timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    now.tv_nsec += 20000000;
    if (now.tv_nsec >= 1000000000) {
      now.tv_sec++;
      now.tv_nsec -= 1000000000;
    }
    t = clock_type::now();
    EXPECT_EQ(::clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &now, nullptr), 0);
    EXPECT_GE(ms_since(t), 15.0);
    return 0;
  }), 0u);
}

TEST(InterceptTest, BlockingPipeReadParksUntilAnotherFiberWrites) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_GT(parks_on(1, [&] {
    // One carrier: if read blocked the carrier, the writer could never run.
    auto reader = bobbin::spawn([&] {
      char buf[16] = {};
      ssize_t n = ::read(p[0], buf, sizeof buf);
      return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
    });
    bobbin::this_fiber::sleep_for(10ms);
    EXPECT_EQ(::write(p[1], "hello", 5), 5);
    EXPECT_EQ(reader.join(), "hello");
    return 0;
  }), 0u);
  ::close(p[0]);
  ::close(p[1]);
}

// A fiber parked in read(2) on a pipe whose read end another thread
// closes. On io_uring the read holds the file, as a blocked thread's read
// does, and still gets what is written after the close. On epoll the
// registration goes with the file, so the close ends the read with EBADF
// (runtime/io/closed_fds.h) instead of leaving it parked for ever; a read
// of the file the number is given to next is not ended by it.
// Until `n` intercepted calls have parked, and a little more, so that
// their operations are in the kernel (or on the epoll set) by then.
void wait_for_parks(bobbin::runtime& rt, uint64_t n) {
  while (rt.stats().intercepted_parks < n) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(30ms);
}

// read(2) of one byte from `fd`: its return value and errno.
std::pair<ssize_t, int> read_one_byte(int fd) {
  char c;
  const ssize_t n = ::read(fd, &c, 1);
  return {n, n < 0 ? errno : 0};
}

// A pipe whose read end has a high number: a number freed by a close is
// taken by the next open anywhere in the process (the pinning monitor reads
// /proc files), and these tests must know what their number names.
void high_numbered_pipe(int p[2]) {
  ASSERT_EQ(::pipe(p), 0);
  const int high = ::fcntl(p[0], F_DUPFD_CLOEXEC, 700);
  ASSERT_GE(high, 700);
  ::close(p[0]);
  p[0] = high;
}

TEST(InterceptTest, AReadParkedOnAnFdAnotherThreadClosesEndsWithEbadfOnEpollAndCarriesOnOnIoUring) {
  int p[2];
  high_numbered_pipe(p);
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  const bool on_epoll = rt->stats().backend == bobbin::io_backend::epoll;
  auto reader = rt->spawn([fd = p[0]] { return read_one_byte(fd); });
  wait_for_parks(*rt, 1);
  const int closed_fd = p[0];
  const auto t = clock_type::now();
  ASSERT_EQ(::close(p[0]), 0);
  if (!on_epoll) {
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(::write(p[1], "x", 1), 1);  // the read end lives on in the read
  }
  const auto [n, err] = reader.join();
  if (on_epoll) {
    EXPECT_EQ(n, -1);
    EXPECT_EQ(err, EBADF);
    EXPECT_LT(ms_since(t), 1000.0);
  } else {
    EXPECT_EQ(n, 1);
  }
  EXPECT_GE(rt->stats().intercepted_parks, 1u);

  // The number, reused: a read parked on the new pipe waits for its data.
  int q[2];
  ASSERT_EQ(::pipe(q), 0);
  ASSERT_EQ(::dup2(q[0], closed_fd), closed_fd);
  ::close(q[0]);
  q[0] = closed_fd;
  auto second = rt->spawn([&] {
    char c = 0;
    const ssize_t n2 = ::read(q[0], &c, 1);
    return n2 == 1 ? c : '?';
  });
  std::this_thread::sleep_for(30ms);
  ASSERT_EQ(::write(q[1], "y", 1), 1);
  EXPECT_EQ(second.join(), 'y');
  ::close(p[1]);
  ::close(q[0]);
  ::close(q[1]);
}

// A fiber that closes the fd another fiber of its carrier waits on, and
// at once gives the number to a new pipe and reads it: the first read ends
// (EBADF on epoll), and the second waits on the new pipe and gets its data
// (on epoll its wait is registered afresh, not taken for the closed file's
// registration, which went with that file).
TEST(InterceptTest, AFiberThatClosesAnFdAndReusesItsNumberAtOnceWaitsOnTheNewFile) {
  int p[2];
  high_numbered_pipe(p);
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  const bool on_epoll = rt->stats().backend == bobbin::io_backend::epoll;
  const int fd = p[0];
  auto first = rt->spawn([fd] { return read_one_byte(fd); });
  wait_for_parks(*rt, 1);
  int q[2];
  ASSERT_EQ(::pipe(q), 0);
  auto second = rt->spawn([&] {
    EXPECT_EQ(::close(fd), 0);
    EXPECT_EQ(::dup2(q[0], fd), fd);
    char c = 0;
    const ssize_t n = ::read(fd, &c, 1);
    return n == 1 ? c : '?';
  });
  wait_for_parks(*rt, 2);
  if (!on_epoll) {
    ASSERT_EQ(::write(p[1], "x", 1), 1);  // the first read holds the old pipe
  }
  ASSERT_EQ(::write(q[1], "z", 1), 1);
  EXPECT_EQ(second.join(), 'z');
  const auto [n, err] = first.join();
  if (on_epoll) {
    EXPECT_EQ(n, -1);
    EXPECT_EQ(err, EBADF);
  } else {
    EXPECT_EQ(n, 1);
  }
  ::close(fd);
  ::close(p[1]);
  ::close(q[0]);
  ::close(q[1]);
}

// Many at once, on two carriers: 200 fibers each parked in read(2) on its
// own pipe, every read end closed by the test's thread. On epoll every read
// ends with EBADF (each close reaches the carrier its wait is on); on
// io_uring every read gets the byte written after the close.
TEST(InterceptTest, ManyReadsParkedOnFdsAnotherThreadClosesAllEnd) {
  constexpr int kPipes = 200;
  std::vector<std::array<int, 2>> pipes(kPipes);
  for (auto& p : pipes) {
    ASSERT_EQ(::pipe(p.data()), 0);
    const int high = ::fcntl(p[0], F_DUPFD_CLOEXEC, 1000);
    ASSERT_GE(high, 1000);
    ::close(p[0]);
    p[0] = high;
  }
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  const bool on_epoll = rt->stats().backend == bobbin::io_backend::epoll;
  std::vector<bobbin::fiber<std::pair<ssize_t, int>>> readers;
  for (auto& p : pipes) {
    readers.push_back(rt->spawn([fd = p[0]] { return read_one_byte(fd); }));
  }
  wait_for_parks(*rt, kPipes);
  for (auto& p : pipes) ASSERT_EQ(::close(p[0]), 0);
  if (!on_epoll) {
    for (auto& p : pipes) ASSERT_EQ(::write(p[1], "x", 1), 1);
  }
  int ended = 0, read_one = 0;
  for (auto& r : readers) {
    const auto [n, err] = r.join();
    if (n == -1 && err == EBADF) ended++;
    if (n == 1) read_one++;
  }
  EXPECT_EQ(on_epoll ? ended : read_one, kPipes);
  for (auto& p : pipes) ::close(p[1]);
}

// The same for poll(2): on epoll the close ends the wait, and poll answers
// as for any fd that is not open (POLLNVAL). On io_uring the wait holds the
// file and ends when data is written after the close; poll's answer, read
// again from the kernel with the fd closed, is POLLNVAL there too.
TEST(InterceptTest, APollParkedOnAnFdAnotherThreadClosesSeesPollnvalOnEpoll) {
  int p[2];
  high_numbered_pipe(p);
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  const bool on_epoll = rt->stats().backend == bobbin::io_backend::epoll;
  const int fd = p[0];
  auto poller = rt->spawn([&] {
    pollfd f{fd, POLLIN, 0};
    const int r = ::poll(&f, 1, 5000);
    return std::make_pair(r, static_cast<int>(f.revents));
  });
  wait_for_parks(*rt, 1);
  const auto t = clock_type::now();
  ASSERT_EQ(::close(p[0]), 0);
  if (!on_epoll) {
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(::write(p[1], "x", 1), 1);
  }
  const auto [r, revents] = poller.join();
  EXPECT_EQ(r, 1);
  EXPECT_LT(ms_since(t), 1000.0);
  EXPECT_EQ(revents, POLLNVAL);
  ::close(p[1]);
}

TEST(InterceptTest, NonBlockingFdStillGetsEagain) {
  socket_pair s;
  ::fcntl(s.a, F_SETFL, ::fcntl(s.a, F_GETFL) | O_NONBLOCK);
  EXPECT_EQ(parks_on(2, [&] {
    char c;
    errno = 0;
    EXPECT_EQ(::recv(s.a, &c, 1, 0), -1);
    EXPECT_EQ(errno, EAGAIN);
    errno = 0;
    EXPECT_EQ(::read(s.a, &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
    return 0;
  }), 0u);
}

TEST(InterceptTest, ReceiveTimeoutGivesEagainAfterTheTimeout) {
  socket_pair s;
  timeval tv{0, 50000};
  ASSERT_EQ(::setsockopt(s.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  EXPECT_GT(parks_on(2, [&] {
    char c;
    auto t = clock_type::now();
    errno = 0;
    EXPECT_EQ(::recv(s.a, &c, 1, 0), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_GE(ms_since(t), 45.0);
    t = clock_type::now();
    EXPECT_EQ(::read(s.a, &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_GE(ms_since(t), 45.0);
    return 0;
  }), 0u);
}

TEST(InterceptTest, RecvFlagsKeepTheirMeaning) {
  socket_pair s;
  EXPECT_GT(parks_on(2, [&] {
    auto writer = bobbin::spawn([&] {
      ::usleep(10000);
      EXPECT_EQ(::send(s.b, "abcdef", 6, MSG_NOSIGNAL), 6);
    });
    char buf[8] = {};
    EXPECT_EQ(::recv(s.a, buf, 3, MSG_PEEK), 3);  // parks, then peeks
    EXPECT_EQ(std::string(buf, 3), "abc");
    EXPECT_EQ(::recv(s.a, buf, 6, MSG_WAITALL), 6);
    EXPECT_EQ(std::string(buf, 6), "abcdef");
    errno = 0;
    EXPECT_EQ(::recv(s.a, buf, 1, MSG_DONTWAIT), -1);
    EXPECT_EQ(errno, EAGAIN);
    writer.join();
    ::shutdown(s.b, SHUT_WR);
    EXPECT_EQ(::recv(s.a, buf, 1, 0), 0);  // orderly end
    return 0;
  }), 0u);
}

TEST(InterceptTest, BlockingWriteReturnsOnlyWhenAllIsWritten) {
  socket_pair s;
  const size_t total = 8 << 20;  // far beyond the socket buffers
  std::string out(total, 'x');
  for (size_t i = 0; i < total; i++) out[i] = static_cast<char>('a' + i % 26);
  EXPECT_GT(parks_on(2, [&] {
    auto reader = bobbin::spawn([&] {
      std::string in;
      in.reserve(total);
      std::vector<char> buf(65536);
      while (in.size() < total) {
        ssize_t n = ::read(s.b, buf.data(), std::min(buf.size(), total - in.size()));
        if (n <= 0) break;
        in.append(buf.data(), static_cast<size_t>(n));
        if (in.size() % (1 << 20) < static_cast<size_t>(n)) ::usleep(1000);  // a slow reader
      }
      return in;
    });
    EXPECT_EQ(::write(s.a, out.data(), total), static_cast<ssize_t>(total));
    EXPECT_EQ(reader.join(), out);
    return 0;
  }), 0u);
}

TEST(InterceptTest, SendToAClosedPeerFailsWithEpipe) {
  socket_pair s;
  ::close(s.b);
  s.b = ::open("/dev/null", O_RDONLY);  // keep the destructor's close harmless
  EXPECT_EQ(parks_on(2, [&] {
    errno = 0;
    EXPECT_EQ(::send(s.a, "x", 1, MSG_NOSIGNAL), -1);
    EXPECT_EQ(errno, EPIPE);
    return 0;
  }), 0u);
}

TEST(InterceptTest, PollReportsTheKernelsReventsAndHonoursItsTimeout) {
  socket_pair s1, s2;
  EXPECT_GT(parks_on(2, [&] {
    pollfd fds[3] = {{s1.a, POLLIN, 0}, {-1, POLLIN, 0}, {s2.a, POLLIN, 0}};
    auto t = clock_type::now();
    EXPECT_EQ(::poll(fds, 3, 40), 0);
    EXPECT_GE(ms_since(t), 35.0);
    auto writer = bobbin::spawn([&] {
      ::usleep(20000);
      EXPECT_EQ(::write(s2.b, "x", 1), 1);
    });
    t = clock_type::now();
    EXPECT_EQ(::poll(fds, 3, 5000), 1);
    EXPECT_LT(ms_since(t), 1000.0);
    EXPECT_EQ(fds[0].revents, 0);
    EXPECT_EQ(fds[1].revents, 0);
    EXPECT_EQ(fds[2].revents, POLLIN);
    writer.join();
    // Writable now: no parking at all.
    pollfd w{s1.a, POLLOUT, 0};
    EXPECT_EQ(::poll(&w, 1, -1), 1);
    EXPECT_EQ(w.revents, POLLOUT);
    // poll(NULL, 0, ms) is a sleep.
    t = clock_type::now();
    EXPECT_EQ(::poll(nullptr, 0, 30), 0);
    EXPECT_GE(ms_since(t), 25.0);
    return 0;
  }), 0u);
}

TEST(InterceptTest, SelectParksAndLeavesTheKernelsSets) {
  socket_pair s;
  EXPECT_GT(parks_on(2, [&] {
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(s.a, &rd);
    timeval tv{0, 30000};
    auto t = clock_type::now();
    EXPECT_EQ(::select(s.a + 1, &rd, nullptr, nullptr, &tv), 0);
    EXPECT_GE(ms_since(t), 25.0);
    EXPECT_FALSE(FD_ISSET(s.a, &rd));
    auto writer = bobbin::spawn([&] {
      ::usleep(10000);
      EXPECT_EQ(::write(s.b, "x", 1), 1);
    });
    FD_ZERO(&rd);
    FD_SET(s.a, &rd);
    EXPECT_EQ(::select(s.a + 1, &rd, nullptr, nullptr, nullptr), 1);
    EXPECT_TRUE(FD_ISSET(s.a, &rd));
    writer.join();
    return 0;
  }), 0u);
}

TEST(InterceptTest, EpollWaitParksUntilTheSetIsReady) {
  socket_pair s;
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s.a;
  ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, s.a, &ev), 0);
  EXPECT_GT(parks_on(1, [&] {
    epoll_event got[4];
    auto t = clock_type::now();
    EXPECT_EQ(::epoll_wait(ep, got, 4, 30), 0);
    EXPECT_GE(ms_since(t), 25.0);
    auto writer = bobbin::spawn([&] {
      ::usleep(10000);
      EXPECT_EQ(::write(s.b, "x", 1), 1);
    });
    EXPECT_EQ(::epoll_wait(ep, got, 4, -1), 1);
    EXPECT_EQ(got[0].data.fd, s.a);
    writer.join();
    return 0;
  }), 0u);
  ::close(ep);
}

TEST(InterceptTest, BlockingAcceptAndConnectPark) {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  ASSERT_EQ(::listen(l, 64), 0);
  EXPECT_GT(parks_on(1, [&] {
    auto server = bobbin::spawn([&] {
      int served = 0;
      for (int i = 0; i < 20; i++) {
        int c = ::accept(l, nullptr, nullptr);
        if (c < 0) break;
        char b[4];
        if (::recv(c, b, 4, MSG_WAITALL) == 4 && ::send(c, b, 4, MSG_NOSIGNAL) == 4) served++;
        ::close(c);
      }
      return served;
    });
    std::vector<bobbin::fiber<bool>> clients;
    for (int i = 0; i < 20; i++) {
      clients.push_back(bobbin::spawn([&] {
        int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        char b[4];
        ok = ok && ::send(c, "ping", 4, MSG_NOSIGNAL) == 4 && ::recv(c, b, 4, MSG_WAITALL) == 4 &&
             std::memcmp(b, "ping", 4) == 0;
        ::close(c);
        return ok;
      }));
    }
    for (auto& c : clients) EXPECT_TRUE(c.join());
    EXPECT_EQ(server.join(), 20);
    return 0;
  }), 0u);
  ::close(l);
}

TEST(InterceptTest, FsyncAndPositionalIoOnAFile) {
  char path[] = "/tmp/bobbin-intercept-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  EXPECT_GT(parks_on(2, [&] {
    EXPECT_EQ(::pwrite(fd, "0123456789", 10, 0), 10);
    EXPECT_EQ(::fsync(fd), 0);
    EXPECT_EQ(::fdatasync(fd), 0);
    char b[4] = {};
    EXPECT_EQ(::pread(fd, b, 4, 3), 4);
    EXPECT_EQ(std::string(b, 4), "3456");
    EXPECT_EQ(::lseek(fd, 8, SEEK_SET), 8);
    EXPECT_EQ(::read(fd, b, 4), 2);  // at the file position, moving it
    EXPECT_EQ(std::string(b, 2), "89");
    EXPECT_EQ(::read(fd, b, 4), 0);
    errno = 0;
    EXPECT_EQ(::fsync(-1), -1);
    EXPECT_EQ(errno, EBADF);
    return 0;
  }), 0u);
  ::close(fd);
}

TEST(InterceptTest, GetaddrinfoRunsOffTheCarriers) {
  std::atomic<int> resolved{0};
  EXPECT_GT(parks_on(2, [&] {
    std::vector<bobbin::fiber<void>> fs;
    for (int i = 0; i < 20; i++) {
      fs.push_back(bobbin::spawn([&] {
        addrinfo hints{};
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        if (::getaddrinfo("localhost", "80", &hints, &res) == 0 && res != nullptr) {
          auto* sin = reinterpret_cast<sockaddr_in*>(res->ai_addr);
          if (sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK)) resolved++;
          ::freeaddrinfo(res);
        }
      }));
    }
    for (auto& f : fs) f.join();
    return 0;
  }), 0u);
  EXPECT_EQ(resolved.load(), 20);
}

// One resolver call, its answer written out (the return code, errno for
// EAI_SYSTEM, and every field the caller would read), so that the answer on
// a fiber can be compared with glibc's own on a plain thread.
struct resolver_case {
  const char* what;
  bool in_place;  // expected: runs on the carrier, not the blocking pool
  std::function<std::string()> call;
};

std::string describe_addrinfo(int rc, const addrinfo* res) {
  std::string out = "rc=" + std::to_string(rc);
  if (rc == EAI_SYSTEM) out += " errno=" + std::to_string(errno);
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = -1;
    if (ai->ai_family == AF_INET) {
      auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      ::inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
      port = ntohs(sin->sin_port);
    } else if (ai->ai_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
      port = ntohs(sin6->sin6_port);
    }
    out += " [" + std::to_string(ai->ai_family) + "/" + std::to_string(ai->ai_socktype) + "/" +
           std::to_string(ai->ai_protocol) + " " + host + " " + std::to_string(port) + " flags " +
           std::to_string(ai->ai_flags) + " canon " + (ai->ai_canonname ? ai->ai_canonname : "-") + "]";
  }
  return out;
}

std::function<std::string()> gai(const char* node, const char* service, int family, int socktype, int flags,
                                 bool null_hints = false) {
  return [=] {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = flags;
    addrinfo* res = nullptr;
    errno = 0;
    const int rc = ::getaddrinfo(node, service, null_hints ? nullptr : &hints, &res);
    std::string out = describe_addrinfo(rc, rc == 0 ? res : nullptr);
    if (rc == 0) ::freeaddrinfo(res);
    return out;
  };
}

std::function<std::string()> gni(const char* addr, int port, socklen_t hostlen, socklen_t servlen, int flags,
                                 socklen_t addrlen_cut = 0) {
  return [=] {
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (std::strchr(addr, ':') != nullptr) {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(static_cast<uint16_t>(port));
      ::inet_pton(AF_INET6, addr, &sin6->sin6_addr);
      len = sizeof *sin6;
    } else {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(static_cast<uint16_t>(port));
      ::inet_pton(AF_INET, addr, &sin->sin_addr);
      len = sizeof *sin;
    }
    if (addrlen_cut != 0) len = addrlen_cut;
    char host[NI_MAXHOST] = "untouched";
    char serv[NI_MAXSERV] = "untouched";
    errno = 0;
    const int rc = ::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, hostlen != 0 ? host : nullptr, hostlen,
                                 servlen != 0 ? serv : nullptr, servlen, flags);
    std::string out = "rc=" + std::to_string(rc);
    if (rc == EAI_SYSTEM) out += " errno=" + std::to_string(errno);
    return out + " host=" + host + " serv=" + serv;
  };
}

TEST(InterceptTest, ResolverCallsThatOnlyConvertNumbersRunInPlace) {
  // Each call runs first on a plain thread with no runtime (glibc's own
  // answer), then on a fiber: the answers must match, and the blocking
  // pool's counter says where the fiber's call ran.
  const std::vector<resolver_case> cases = {
      {"getnameinfo IPv4, numeric host and service", true, gni("127.0.0.1", 8080, NI_MAXHOST, NI_MAXSERV,
                                                               NI_NUMERICHOST | NI_NUMERICSERV)},
      {"getnameinfo IPv6, numeric host and service", true, gni("::1", 443, NI_MAXHOST, NI_MAXSERV,
                                                               NI_NUMERICHOST | NI_NUMERICSERV)},
      {"getnameinfo numeric host, no service", true, gni("10.1.2.3", 80, NI_MAXHOST, 0, NI_NUMERICHOST)},
      {"getnameinfo numeric service, no host", true, gni("10.1.2.3", 80, 0, NI_MAXSERV, NI_NUMERICSERV)},
      {"getnameinfo host buffer too small (EAI_OVERFLOW)", true, gni("127.0.0.1", 80, 4, 0, NI_NUMERICHOST)},
      {"getnameinfo short address length (EAI_FAMILY)", true, gni("127.0.0.1", 80, NI_MAXHOST, 0, NI_NUMERICHOST,
                                                                   /*addrlen_cut=*/4)},
      {"getnameinfo numeric host with NI_NAMEREQD", true, gni("127.0.0.1", 80, NI_MAXHOST, 0,
                                                              NI_NUMERICHOST | NI_NAMEREQD)},
      {"getnameinfo host name lookup", false, gni("127.0.0.1", 80, NI_MAXHOST, 0, 0)},
      {"getnameinfo service name lookup", false, gni("127.0.0.1", 80, NI_MAXHOST, NI_MAXSERV, NI_NUMERICHOST)},
      {"getaddrinfo IPv4 literal, port", true, gai("127.0.0.1", "80", AF_INET, SOCK_STREAM, 0)},
      {"getaddrinfo IPv6 literal, port, any family", true, gai("::1", "8080", AF_UNSPEC, 0, 0)},
      {"getaddrinfo no host, passive", true, gai(nullptr, "8080", AF_UNSPEC, SOCK_STREAM, AI_PASSIVE)},
      {"getaddrinfo literal, no service", true, gai("192.168.7.9", nullptr, AF_INET, SOCK_DGRAM, 0)},
      {"getaddrinfo name with AI_NUMERICHOST (EAI_NONAME)", true, gai("localhost", "80", AF_UNSPEC, 0,
                                                                       AI_NUMERICHOST)},
      {"getaddrinfo bad literal with AI_NUMERICHOST (EAI_NONAME)", true, gai("1.2.3.4.5", "80", AF_INET, 0,
                                                                             AI_NUMERICHOST)},
      {"getaddrinfo service name with AI_NUMERICSERV (EAI_NONAME)", true, gai("127.0.0.1", "http", AF_INET, 0,
                                                                              AI_NUMERICSERV)},
      {"getaddrinfo IPv6 literal for AF_INET (EAI_ADDRFAMILY/NONAME)", true, gai("::1", "80", AF_INET, 0, 0)},
      {"getaddrinfo host name", false, gai("localhost", "80", AF_INET, SOCK_STREAM, 0)},
      {"getaddrinfo service name", false, gai("127.0.0.1", "http", AF_INET, SOCK_STREAM, 0)},
      {"getaddrinfo literal with AI_CANONNAME", false, gai("127.0.0.1", "80", AF_INET, SOCK_STREAM, AI_CANONNAME)},
      {"getaddrinfo literal with AI_ADDRCONFIG", false, gai("127.0.0.1", "80", AF_INET, SOCK_STREAM, AI_ADDRCONFIG)},
      {"getaddrinfo literal, null hints (AI_ADDRCONFIG)", false, gai("127.0.0.1", "80", 0, 0, 0, true)},
  };
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  for (const resolver_case& c : cases) {
    std::string expected;
    std::thread([&] { expected = c.call(); }).join();
    const uint64_t before = rt->stats().offloaded_calls;
    const std::string got = rt->spawn([&] { return c.call(); }).join();
    const uint64_t offloaded = rt->stats().offloaded_calls - before;
    EXPECT_EQ(got, expected) << c.what;
    EXPECT_EQ(offloaded, c.in_place ? 0u : 1u) << c.what;
  }
}

// Compiled code may compute &errno before a call and read it after (glibc
// declares __errno_location const). Here that is explicit: if the fiber
// resumed on another carrier, `e` would point at the other thread's errno.
__attribute__((noinline)) bool errno_survives_a_park(int fd) {
  int* e = &errno;
  *e = 0;
  char c;
  ssize_t n = ::recv(fd, &c, 1, 0);  // SO_RCVTIMEO: parks, then fails with EAGAIN
  asm volatile("" ::: "memory");
  return n == -1 && *e == EAGAIN && e == &errno;
}

TEST(InterceptTest, AFiberParkedInACallResumesOnItsCarrier) {
  // Each round ends at a barrier whose last arrival readies every fiber at
  // once on its carrier, more than it runs alone (carrier::wants_help), so
  // the other carrier wakes and steals half of the queue: without the
  // measure, resumes land on the other carrier.
  constexpr int kFibers = 200;
  constexpr int kRounds = 20;
  std::vector<socket_pair> pairs(kFibers);
  for (auto& p : pairs) {
    timeval tv{0, 1000};
    ASSERT_EQ(::setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  }
  std::atomic<int> wrong{0}, done{0}, migrated_elsewhere{0};
  std::vector<std::unique_ptr<bobbin::latch>> barriers;
  for (int round = 0; round < kRounds; round++) barriers.push_back(std::make_unique<bobbin::latch>(kFibers));
  EXPECT_GT(parks_on(2, [&] {
    std::vector<bobbin::fiber<void>> fs;
    for (int i = 0; i < kFibers; i++) {
      fs.push_back(bobbin::spawn([&, i] {
        for (int round = 0; round < kRounds; round++) {
          const int before = bobbin::this_fiber::carrier_index();
          if (!errno_survives_a_park(pairs[i].a)) wrong++;
          if (bobbin::this_fiber::carrier_index() != before) wrong++;
          done++;
          const int at_barrier = bobbin::this_fiber::carrier_index();
          barriers[round]->arrive_and_wait();  // a bobbin park: may migrate
          if (bobbin::this_fiber::carrier_index() != at_barrier) migrated_elsewhere++;
        }
      }));
    }
    for (auto& f : fs) f.join();
    return 0;
  }), 0u);
  EXPECT_EQ(done.load(), kFibers * kRounds);
  EXPECT_EQ(wrong.load(), 0);
  // The same load does move fibers at bobbin's own parks, so the check
  // above was not vacuous.
  EXPECT_GT(migrated_elsewhere.load(), 0);
}

TEST(InterceptTest, PlainThreadsAndPinnedRegionsMakeThePlainCall) {
  socket_pair s;
  // A plain thread: read blocks the thread until the data comes.
  std::thread t([&] {
    char c;
    EXPECT_EQ(::read(s.a, &c, 1), 1);
  });
  ::usleep(10000);
  EXPECT_EQ(::write(s.b, "x", 1), 1);
  t.join();
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  rt->spawn([] {
      bobbin::pinned_scope pin("test: plain calls");
      ::usleep(1000);
    }).join();
  EXPECT_EQ(rt->stats().intercepted_parks, 0u);
  rt->spawn([] { ::usleep(1000); }).join();
  EXPECT_EQ(rt->stats().intercepted_parks, 1u);
}

TEST(InterceptTest, RuntimeOptionTurnsItOff) {
  bobbin::runtime_options o;
  o.carriers = 1;
  o.intercept_blocking_calls = false;
  auto rt = bobbin::runtime::start(o).value();
  rt->spawn([] { ::usleep(1000); }).join();
  EXPECT_EQ(rt->stats().intercepted_parks, 0u);
}

extern "C" ssize_t __read_chk(int, void*, size_t, size_t);
extern "C" int __poll_chk(pollfd*, nfds_t, int, size_t);

TEST(InterceptTest, FortifiedEntryPointsPark) {
  socket_pair s;
  EXPECT_GT(parks_on(1, [&] {
    auto writer = bobbin::spawn([&] {
      ::usleep(10000);
      EXPECT_EQ(::write(s.b, "x", 1), 1);
    });
    pollfd p{s.a, POLLIN, 0};
    EXPECT_EQ(__poll_chk(&p, 1, 5000, sizeof p), 1);
    char c;
    EXPECT_EQ(__read_chk(s.a, &c, 1, sizeof c), 1);
    writer.join();
    return 0;
  }), 0u);
}

}  // namespace
