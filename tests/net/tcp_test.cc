// TCP on io_uring: echo round trips at 1,000 concurrent connections,
// deadlines, close() cancelling pending calls, peer resets, and the same
// calls from plain threads. Everything binds to 127.0.0.1, port 0.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/net/tcp_listener.h"
#include "bobbin/net/tcp_stream.h"
#include "bobbin/offload.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/latch.h"
#include "bobbin/sync/mutex.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::io_result;
using bobbin::socket_address;
using bobbin::tcp_listener;
using bobbin::tcp_stream;
using bobbin::testing::run_on;

void echo_loop(tcp_stream s) {
  char buf[4096];
  for (;;) {
    io_result r = s.read_some(std::span(buf));
    if (!r || r.bytes == 0) return;
    if (!s.write_all(std::string_view(buf, r.bytes))) return;
  }
}

// Accepts `n` connections on `listener` and echoes each on a fiber of its
// own; the fiber returns how many it accepted.
bobbin::fiber<int> spawn_echo_server(tcp_listener& listener, int n, bobbin::deadline accept_deadline) {
  return bobbin::spawn([&listener, n, accept_deadline] {
    for (int i = 0; i < n; i++) {
      auto s = listener.accept(accept_deadline);
      if (!s) return i;
      bobbin::spawn([s = std::move(*s)]() mutable { echo_loop(std::move(s)); }).detach();
    }
    return n;
  });
}

// Connects `n` plain blocking sockets to `addr`, from a plain thread (the
// kernel completes each handshake before accept() is called); returns them.
std::vector<int> connect_plain_sockets(const socket_address& addr, int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; i++) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(addr.port());
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    fds.push_back(fd);
  }
  return fds;
}

TEST(AddressTest, ParsesAndPrints) {
  auto a = socket_address::parse("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port(), 8080);
  EXPECT_EQ(a->to_string(), "127.0.0.1:8080");
  auto b = socket_address::parse("[::1]:443");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->to_string(), "[::1]:443");
  EXPECT_EQ(socket_address::parse("localhost:80").error(), std::errc::invalid_argument);
  EXPECT_EQ(socket_address::parse("1.2.3.4:99999").error(), std::errc::invalid_argument);
  EXPECT_EQ(socket_address::parse("1.2.3.4").error(), std::errc::invalid_argument);
}

TEST(TcpTest, BindReportsAddressInUse) {
  run_on(1, [] {
    auto a = tcp_listener::bind(socket_address::loopback(0)).value();
    auto b = tcp_listener::bind(a.local_address());
    EXPECT_FALSE(b.ok());
    EXPECT_NE(b.status().message().find("bind to 127.0.0.1"), absl::string_view::npos);
  });
}

// 1,000 connections at once on 2 carriers, 5 checked round trips each.
// The deadlines are there only so that a lost wake-up fails the test instead
// of hanging it: 10 s is hundreds of times what a round trip takes in the
// normal build, and it is scaled in the sanitizer builds, where creating
// 1,000 fibers alone takes seconds. Every failure says which call failed,
// when, and how.
TEST(TcpTest, EchoRoundTripsWithThousandConcurrentConnections) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    const socket_address addr = listener.local_address();
    constexpr int kConns = 1000;
    constexpr int kRounds = 5;
    const auto limit = bobbin::testing::scaled(std::chrono::seconds(10));
    const auto t0 = std::chrono::steady_clock::now();
    auto server = spawn_echo_server(listener, kConns, bobbin::deadline(6 * limit));
    std::atomic<int> ok{0}, failed{0};
    bobbin::mutex failures_mu;
    std::vector<std::string> failures;
    auto fail = [&](int c, const std::string& what, std::error_code e) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      std::lock_guard l(failures_mu);
      failures.push_back("conn " + std::to_string(c) + ": " + what + " at " + std::to_string(ms.count()) +
                         " ms: " + e.message());
      failed++;
    };
    bobbin::latch done(kConns);
    for (int c = 0; c < kConns; c++) {
      bobbin::spawn([&, c] {
        auto s = tcp_stream::connect(addr, limit);
        if (!s) {
          fail(c, "connect", s.error());
          done.count_down();
          return;
        }
        bool good = true;
        for (int r = 0; r < kRounds && good; r++) {
          std::string msg = "conn " + std::to_string(c) + " round " + std::to_string(r);
          if (auto w = s->write_all(msg, limit); !w) {
            fail(c, "write, round " + std::to_string(r), w.error);
            good = false;
            break;
          }
          std::string back(msg.size(), '\0');
          if (auto rd = s->read_exact(std::span(back), limit); !rd) {
            fail(c, "read, round " + std::to_string(r), rd.error);
            good = false;
          } else if (back != msg) {
            fail(c, "echo of round " + std::to_string(r) + " was \"" + back + "\"", {});
            good = false;
          }
        }
        if (good) ok++;
        done.count_down();
      }).detach();
    }
    done.wait();
    EXPECT_EQ(server.join(), kConns);
    EXPECT_EQ(ok.load(), kConns);
    EXPECT_EQ(failed.load(), 0);
    for (size_t i = 0; i < failures.size() && i < 10; i++) ADD_FAILURE() << failures[i];
  });
}

// On epoll, a tcp_stream's socket is registered once per carrier, not armed
// again for every wait (epoll_backend.h, "Registrations"): 10 connections
// ping-pong 300 times on one carrier, thousands of parked reads, and the
// epoll_ctl calls number a few per socket. On io_uring there are none.
TEST(TcpTest, OnEpollASocketIsRegisteredOncePerCarrierNotForEachWait) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  constexpr int kConns = 10;
  constexpr int kRounds = 300;
  std::atomic<int> ok{0};
  rt->spawn([&] {
     auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
     auto server = spawn_echo_server(listener, kConns, bobbin::deadline::never());
     bobbin::latch done(kConns);
     for (int c = 0; c < kConns; c++) {
       bobbin::spawn([&] {
         auto s = tcp_stream::connect(listener.local_address()).value();
         char back[8];
         int good = 0;
         for (int r = 0; r < kRounds; r++) {
           if (!s.write_all("ping") || !s.read_exact(std::span(back, 4)) || std::string_view(back, 4) != "ping") break;
           good++;
         }
         if (good == kRounds) ok++;
         done.count_down();
       }).detach();
     }
     done.wait();
     EXPECT_EQ(server.join(), kConns);
   }).join();
  EXPECT_EQ(ok.load(), kConns);
  const bobbin::runtime_stats s = rt->stats();
  if (s.backend == bobbin::io_backend::epoll) {
    // 21 sockets (the listener, both ends of 10 connections); a socket that
    // woke the idle carrier 4 times while nobody waited on it is removed and
    // registered again by its next wait.
    EXPECT_LE(s.io_registrations, 4u * (2 * kConns + 1)) << "for " << 2 * kConns * kRounds << " reads";
    EXPECT_GE(s.io_registrations, 2u * kConns);
  } else {
    EXPECT_EQ(s.io_registrations, 0u);
  }
}

// Registrations of fd number `fd` in this process's epoll sets: the fdinfo
// of each epoll fd lists one "tfd:" line per registered fd.
int epoll_registrations_of(int fd) {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* e = ::readdir(dir)) {
    char target[64] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    if (::readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
    if (std::string_view(target) != "anon_inode:[eventpoll]") continue;
    std::ifstream info(std::string("/proc/self/fdinfo/") + e->d_name);
    for (std::string line; std::getline(info, line);) {
      int tfd = -1;
      if (std::sscanf(line.c_str(), "tfd: %d", &tfd) == 1 && tfd == fd) n++;
    }
  }
  ::closedir(dir);
  return n;
}

// A socket registered edge-triggered stays registered while its file lives,
// and a dup (or a fork, or a socket passed to another process) keeps the
// file alive after the tcp_stream closes its fd; so close() takes the fd off
// every carrier's epoll set first (Go's netpollclose does the same), or the
// file's events would go on waking the carrier.
TEST(TcpTest, OnEpollAClosedStreamLeavesNoRegistrationBehindWhileADupKeepsItsSocket) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  int number = -1, registered_before_close = -1, dup_fd = -1;
  rt->spawn([&] {
     auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
     auto client = tcp_stream::connect(listener.local_address()).value();
     auto server = listener.accept().value();
     char c;
     EXPECT_FALSE(client.read_some(std::span(&c, 1), bobbin::deadline(20ms))) << "waits, then times out";
     number = client.native_handle();
     registered_before_close = epoll_registrations_of(number);
     dup_fd = ::dup(number);
     client.close();
   }).join();
  ASSERT_GE(dup_fd, 0);
  const bool on_epoll = rt->stats().backend == bobbin::io_backend::epoll;
  EXPECT_EQ(registered_before_close, on_epoll ? 1 : 0);
  EXPECT_EQ(epoll_registrations_of(number), 0) << "the socket lives on through a dup";
  ::close(dup_fd);
}

// Connections the kernel already holds are accepted without parking, so a
// burst is not accepted one turn of a busy run queue at a time: 200 fibers
// keep the only carrier's queue full while a thread connects 50 clients at
// once. Parking for each accept costs a whole turn of the queue (200 yields)
// per connection, about 10,000 yields for the burst; taking them directly,
// a few turns.
TEST(TcpTest, ABurstOfConnectionsIsAcceptedWithoutATurnOfTheQueueEach) {
  run_on(1, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    const socket_address addr = listener.local_address();
    constexpr int kBusy = 200;
    constexpr int kBurst = 50;
    std::atomic<bool> stop{false};
    std::atomic<long> yields{0};
    std::vector<bobbin::fiber<>> busy;
    for (int i = 0; i < kBusy; i++) {
      busy.push_back(bobbin::spawn([&] {
        while (!stop.load(std::memory_order_relaxed)) {
          yields.fetch_add(1, std::memory_order_relaxed);
          bobbin::this_fiber::yield();
        }
      }));
    }
    // All connected (the kernel completes the handshakes) before the first
    // accept: the accept loop finds them all waiting.
    std::vector<int> clients;
    std::thread([&] { clients = connect_plain_sockets(addr, kBurst); }).join();
    long first = -1, last = -1;
    for (int i = 0; i < kBurst; i++) {
      auto s = listener.accept(10s);
      ASSERT_TRUE(s) << s.error().message();
      if (i == 0) first = yields.load();
      last = yields.load();
    }
    stop = true;
    for (auto& f : busy) f.join();
    for (int fd : clients) ::close(fd);
    EXPECT_LT(last - first, 5 * kBusy) << "yields between the first and the last accept of the burst";
  });
}

// A burst of new connections does not starve an established one. On 1
// carrier, two fibers ping-pong one byte over an established connection
// while the test fiber accepts 2,000 connections the kernel already holds.
// Such accepts do not park, so before the acceptor yielded every 32 of
// them its carrier neither ran the pair nor reaped its ring until the
// burst was over: 0 round trips during it (in http_server, 10,000 new
// connections held a keep-alive client 757 ms). Counted in round trips,
// not time: on one carrier, with no spare carrier to bring online, the
// interleaving is the scheduler's alone. The connects run through offload()
// so that the test fiber parks meanwhile: joining a thread there blocked the
// carrier long enough, with one core kept busy, for a spare to take the pair
// over (0 round trips, 1 run of 10).
TEST(TcpTest, ABurstOfNewConnectionsDoesNotStarveAnEstablishedOne) {
  rlimit nofile;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &nofile), 0);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  const int burst = std::min<int>(2000, static_cast<int>((nofile.rlim_cur - 100) / 2));
  bobbin::runtime_options one_carrier;
  one_carrier.carriers = 1;
  one_carrier.max_spare_carriers = 0;
  bobbin::run([&] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    const socket_address addr = listener.local_address();
    std::atomic<bool> stop{false};
    std::atomic<long> round_trips{0};
    auto client = bobbin::spawn([&] {
      auto s = tcp_stream::connect(addr, 10s).value();
      char b = 'x';
      while (!stop.load(std::memory_order_relaxed)) {
        if (!s.write_all(std::string_view(&b, 1), 10s) || !s.read_exact(std::span(&b, 1), 10s)) return false;
        round_trips.fetch_add(1, std::memory_order_relaxed);
      }
      return true;
    });
    auto echo = bobbin::spawn([s = listener.accept(10s).value()]() mutable { echo_loop(std::move(s)); });
    while (round_trips.load() < 10) bobbin::this_fiber::sleep_for(1ms);
    const std::vector<int> clients = bobbin::offload([&] { return connect_plain_sockets(addr, burst); });
    std::vector<tcp_stream> accepted;
    const long before = round_trips.load();
    for (int i = 0; i < burst; i++) {
      auto s = listener.accept(10s);
      ASSERT_TRUE(s) << s.error().message();
      accepted.push_back(std::move(*s));
    }
    const long during = round_trips.load() - before;
    stop = true;
    EXPECT_TRUE(client.join());
    std::printf("  %ld round trips on the established connection while %d connections were accepted\n", during,
                burst);
    EXPECT_GT(during, 0);
    for (int fd : clients) ::close(fd);
    accepted.clear();
    echo.join();
  }, one_carrier);
}

// Rings of 8 entries (the smallest allowed) under 10,000 fibers doing I/O
// and timed waits on 2 carriers: the submission queue is full nearly all
// the time and completions outnumber the completion queue many times over,
// and still every operation completes and every byte comes back as sent.
TEST(TcpTest, TinyRingsCarryTenThousandFibersOfIoWithNothingLost) {
  rlimit nofile;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &nofile), 0);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  const int pairs = std::min<int>(bobbin::testing::max_live_fibers(10000) / 2,
                                  static_cast<int>((nofile.rlim_cur - 100) / 2));
  bobbin::runtime_options o;
  o.carriers = 2;
  o.ring_entries = 8;
  bobbin::run(
      [&] {
        auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
        const socket_address addr = listener.local_address();
        auto server = spawn_echo_server(listener, pairs, bobbin::deadline(60s));
        std::atomic<int> ok{0};
        std::atomic<long> bytes{0};
        std::vector<std::string> failures;
        bobbin::mutex failures_mu;
        bobbin::latch done(pairs);
        for (int c = 0; c < pairs; c++) {
          bobbin::spawn([&, c] {
            std::string why;
            auto s = tcp_stream::connect(addr, 60s);
            if (!s) {
              why = "connect: " + s.error().message();
            } else {
              // 16 chunks of 1..4096 bytes, a pattern that names the
              // connection and the offset, each echoed back and checked.
              uint32_t seed = static_cast<uint32_t>(c) * 2654435761u + 1;
              for (int chunk = 0; chunk < 16 && why.empty(); chunk++) {
                seed = seed * 1664525u + 1013904223u;
                const std::size_t n = 1 + seed % 4096;
                std::string out(n, '\0');
                for (std::size_t i = 0; i < n; i++) out[i] = static_cast<char>((c * 31 + chunk * 7 + i) & 0xff);
                if (!s->write_all(out, 60s)) {
                  why = "write";
                  break;
                }
                std::string back(n, '\0');
                if (!s->read_exact(std::span(back), 60s)) {
                  why = "read";
                  break;
                }
                if (back != out) why = "bytes differ in chunk " + std::to_string(chunk);
                bytes += static_cast<long>(n);
                if (chunk % 4 == 3) bobbin::this_fiber::sleep_for(1ms);  // timeouts through the ring too
              }
            }
            if (why.empty()) {
              ok++;
            } else {
              std::lock_guard l(failures_mu);
              failures.push_back("connection " + std::to_string(c) + ": " + why);
            }
            done.count_down();
          }).detach();
        }
        EXPECT_TRUE(done.wait_until(bobbin::deadline(120s))) << ok.load() << " of " << pairs << " finished";
        EXPECT_EQ(server.join(), pairs);
        EXPECT_EQ(ok.load(), pairs) << (failures.empty() ? "" : failures.front());
        EXPECT_GT(bytes.load(), 0);
      },
      o);
}

// Out of descriptors (a low RLIMIT_NOFILE, in a child process): accept()
// reports EMFILE, the connection stays queued in the kernel, the
// connections already open keep being served, and once a descriptor is
// free the queued connection is accepted: nothing is lost.
TEST(TcpDeathTest, OutOfDescriptorsAcceptFailsAndRecovers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        // No pinning monitor: a report symbolizes its stack, which opens
        // files, and could take the one descriptor the test leaves free.
        bobbin::runtime_options options = bobbin::testing::carriers(2);
        options.pin_threshold = std::chrono::milliseconds(0);
        const int code = bobbin::run([] {
          auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
          const socket_address addr = listener.local_address();
          // One connection accepted and served before the limit bites.
          auto early_client = tcp_stream::connect(addr, 5s);
          if (!early_client) return 10;
          auto early = listener.accept(5s);
          if (!early) return 11;
          auto echo = bobbin::spawn([s = std::move(*early)]() mutable { echo_loop(std::move(s)); });
          // Detached, so that an early return below reports its code rather
          // than aborting on a joinable handle; it ends when its client closes.
          echo.detach();
          // One round trip first, so the echo fiber has started before the
          // descriptors run out: UBSan checks the first virtual call into a
          // fiber's body (its vptr) with a pipe, which fails under EMFILE and
          // was reported as an invalid vptr (once in CI).
          char warm[4];
          if (!early_client->write_all("warm", 5s) || !early_client->read_exact(std::span(warm), 5s)) return 19;
          // Use up every descriptor but a few, then connect one more client
          // (its handshake completes in the kernel, queued for accept).
          std::vector<int> hogs;
          rlimit nofile{};
          ::getrlimit(RLIMIT_NOFILE, &nofile);
          nofile.rlim_cur = 256;
          if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) return 12;
          for (;;) {
            int fd = ::dup(0);
            if (fd < 0) break;
            hogs.push_back(fd);
          }
          ::close(hogs.back());  // room for the late client's socket only
          hogs.pop_back();
          auto late_client = tcp_stream::connect(addr, 5s);
          if (!late_client) return 13;
          auto refused = listener.accept(1s);
          if (refused || refused.error() != std::errc::too_many_files_open) return 14;
          // The open connection is still served meanwhile.
          if (!early_client->write_all("ping", 5s)) return 15;
          char back[4];
          if (!early_client->read_exact(std::span(back), 5s) || std::string_view(back, 4) != "ping") return 16;
          // Free descriptors: the queued connection is accepted and works.
          for (int fd : hogs) ::close(fd);
          auto late = listener.accept(5s);
          if (!late) return 17;
          if (!late_client->write_all("late", 5s) || !late->read_exact(std::span(back), 5s) ||
              std::string_view(back, 4) != "late") {
            return 18;
          }
          early_client->close();
          return 0;
        }, options);
        std::_Exit(code);
      },
      testing::ExitedWithCode(0), "");
}

// A peer that never reads: the write fills both socket buffers, parks, and
// its deadline ends it with timed_out and the bytes that did go out; a
// half-closed peer still gets what is written to it.
TEST(TcpTest, AWriteToAPeerThatNeverReadsEndsAtItsDeadline) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto client = tcp_stream::connect(listener.local_address()).value();
    auto server_side = listener.accept().value();
    std::string big(64 << 20, 'x');
    const auto t0 = std::chrono::steady_clock::now();
    io_result w = server_side.write_all(big, 200ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(w.error, std::errc::timed_out);
    EXPECT_GT(w.bytes, 0u);              // the buffers took some
    EXPECT_LT(w.bytes, big.size());      // but not 64 MiB
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 5s);
    // The client reads what was sent, byte for byte, then half-closes.
    std::string got(w.bytes, '\0');
    ASSERT_TRUE(client.read_exact(std::span(got), 5s));
    EXPECT_EQ(got, big.substr(0, w.bytes));
    char more[64];
    io_result extra = client.read_some(std::span(more), 100ms);
    EXPECT_EQ(extra.error, std::errc::timed_out) << "the write reported every byte it sent, and no more: "
                                                 << extra.bytes << " more arrived";
    ASSERT_EQ(::shutdown(client.native_handle(), SHUT_WR), 0);
    char buf[8];
    io_result eof = server_side.read_some(std::span(buf), 1s);
    EXPECT_TRUE(eof);
    EXPECT_EQ(eof.bytes, 0u);  // end of stream from the half-closed peer
    // ... which still reads what the server writes after that.
    ASSERT_TRUE(server_side.write_all("after half-close", 1s));
    std::string tail(16, '\0');
    ASSERT_TRUE(client.read_exact(std::span(tail), 1s));
    EXPECT_EQ(tail, "after half-close");
  });
}

TEST(TcpTest, ReadDeadlineTimesOutAndStreamStaysUsable) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto client = tcp_stream::connect(listener.local_address()).value();
    auto server_side = listener.accept().value();
    char buf[16];
    auto t0 = std::chrono::steady_clock::now();
    io_result r = server_side.read_some(std::span(buf), 30ms);
    EXPECT_EQ(r.error, std::errc::timed_out);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
    ASSERT_TRUE(client.write_all("hi"));
    r = server_side.read_some(std::span(buf), 1s);
    ASSERT_TRUE(r) << r.error.message();
    EXPECT_EQ(std::string_view(buf, r.bytes), "hi");
  });
}

TEST(TcpTest, ConnectRefusedIsReportedExactly) {
  run_on(1, [] {
    socket_address addr;
    {
      auto l = tcp_listener::bind(socket_address::loopback(0)).value();
      addr = l.local_address();
    }  // closed: nobody listens there now
    auto s = tcp_stream::connect(addr, 1s);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error(), std::errc::connection_refused);
  });
}

TEST(TcpTest, ConnectTimesOutWhenBacklogIsFull) {
  run_on(1, [] {
    auto l = tcp_listener::bind(socket_address::loopback(0), /*backlog=*/1).value();
    std::vector<tcp_stream> held;
    bool timed_out = false;
    for (int i = 0; i < 16 && !timed_out; i++) {
      auto s = tcp_stream::connect(l.local_address(), 100ms);
      if (s) held.push_back(std::move(*s));
      else timed_out = s.error() == std::errc::timed_out;
    }
    EXPECT_TRUE(timed_out) << "the kernel accepted " << held.size() << " connections into a backlog of 1";
  });
}

TEST(TcpTest, CloseFromAnotherFiberCancelsPendingRead) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto client = tcp_stream::connect(listener.local_address()).value();
    auto server_side = listener.accept().value();
    auto reader = bobbin::spawn([&] {
      char buf[16];
      return server_side.read_some(std::span(buf)).error;
    });
    bobbin::this_fiber::sleep_for(20ms);  // let it park in the kernel
    server_side.close();
    EXPECT_EQ(reader.join(), std::errc::operation_canceled);
    char buf[4];
    EXPECT_EQ(server_side.read_some(std::span(buf)).error, std::errc::bad_file_descriptor);
  });
}

TEST(TcpTest, CloseFromAnotherFiberStopsAcceptLoop) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto acceptor = bobbin::spawn([&] { return listener.accept().error(); });
    bobbin::this_fiber::sleep_for(20ms);
    listener.close();
    EXPECT_EQ(acceptor.join(), std::errc::operation_canceled);
  });
}

// The way a signal thread stops a server: stop_accepting() from a plain
// thread, racing an accept loop that keeps calling accept() on a fiber.
TEST(TcpTest, StopAcceptingFromAPlainThreadEndsTheAcceptLoop) {
  for (int round = 0; round < 20; round++) {
    auto rt = bobbin::runtime::start({.carriers = 2}).value();
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    const auto addr = listener.local_address();
    std::atomic<int> accepted{0};
    auto loop = rt->spawn([&] {
      for (;;) {
        auto s = listener.accept();
        if (!s) return s.error();
        accepted++;
      }
    });
    std::thread client([&] {
      for (int i = 0; i < 5; i++) (void)tcp_stream::connect(addr, 1s);
    });
    client.join();
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 3 * 5));
    std::thread stopper([&] { listener.stop_accepting(); });
    stopper.join();
    EXPECT_EQ(loop.join(), std::errc::invalid_argument);
    listener.close();
  }
}

TEST(TcpTest, PeerResetIsAnErrorNotACrash) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto client = tcp_stream::connect(listener.local_address()).value();
    auto server_side = listener.accept().value();
    // Reset: SO_LINGER with a zero timeout makes close() send RST.
    linger lg{1, 0};
    ASSERT_EQ(::setsockopt(client.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    client.close();
    char buf[16];
    io_result r = server_side.read_some(std::span(buf), 1s);
    EXPECT_EQ(r.error, std::errc::connection_reset);
    // Writing to a reset connection: an error, never SIGPIPE.
    std::string big(1 << 20, 'x');
    io_result w = server_side.write_all(big, 1s);
    EXPECT_FALSE(w);
    EXPECT_TRUE(w.error == std::errc::broken_pipe || w.error == std::errc::connection_reset) << w.error.message();
  });
}

// The reset arrives while the server's fiber is parked in the call: a
// write that filled the socket buffers, and a read waiting for data. Both
// end at once with the reset, the write reporting what went out.
TEST(TcpTest, APeerResetEndsAParkedWriteAndAParkedRead) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto writer_peer = tcp_stream::connect(listener.local_address()).value();
    auto writer = listener.accept().value();
    auto reader_peer = tcp_stream::connect(listener.local_address()).value();
    auto reader = listener.accept().value();
    std::string big(64 << 20, 'x');
    io_result w, r;
    std::chrono::steady_clock::duration write_took{}, read_took{};
    auto write_fiber = bobbin::spawn([&] {
      const auto t0 = std::chrono::steady_clock::now();
      w = writer.write_all(big, 10s);
      write_took = std::chrono::steady_clock::now() - t0;
    });
    auto read_fiber = bobbin::spawn([&] {
      char buf[64];
      const auto t0 = std::chrono::steady_clock::now();
      r = reader.read_some(std::span(buf), 10s);
      read_took = std::chrono::steady_clock::now() - t0;
    });
    bobbin::this_fiber::sleep_for(200ms);  // both are parked by now
    linger lg{1, 0};
    for (tcp_stream* peer : {&writer_peer, &reader_peer}) {
      ASSERT_EQ(::setsockopt(peer->native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
      peer->close();
    }
    write_fiber.join();
    read_fiber.join();
    EXPECT_TRUE(w.error == std::errc::connection_reset || w.error == std::errc::broken_pipe) << w.error.message();
    EXPECT_GT(w.bytes, 0u);
    EXPECT_LT(w.bytes, big.size());
    EXPECT_LT(write_took, 5s);
    EXPECT_EQ(r.error, std::errc::connection_reset) << r.error.message();
    EXPECT_EQ(r.bytes, 0u);
    EXPECT_LT(read_took, 5s);
  });
}

TEST(TcpTest, OrderlyShutdownReadsAsEndOfStream) {
  run_on(2, [] {
    auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
    auto client = tcp_stream::connect(listener.local_address()).value();
    auto server_side = listener.accept().value();
    ASSERT_TRUE(client.write_all("abc"));
    ASSERT_TRUE(client.shutdown());
    char buf[8];
    io_result r = server_side.read_exact(std::span(buf));
    EXPECT_EQ(r.bytes, 3u);
    EXPECT_EQ(r.error, bobbin::io_errc::unexpected_eof);
  });
}

TEST(TcpTest, SameCallsWorkFromPlainThreads) {
  // No runtime at all: ordinary blocking syscalls.
  auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
  std::thread server([&] {
    auto s = listener.accept(2s);
    ASSERT_TRUE(s) << s.error().message();
    echo_loop(std::move(*s));
  });
  auto c = tcp_stream::connect(listener.local_address(), 2s).value();
  ASSERT_TRUE(c.write_all("ping"));
  char buf[4];
  ASSERT_TRUE(c.read_exact(std::span(buf), 2s));
  EXPECT_EQ(std::string_view(buf, 4), "ping");
  EXPECT_EQ(c.read_some(std::span(buf), 20ms).error, std::errc::timed_out);
  c.close();
  server.join();
}

TEST(TcpTest, ThreadBlockedInReadIsCancelledByClose) {
  auto listener = tcp_listener::bind(socket_address::loopback(0)).value();
  auto c = tcp_stream::connect(listener.local_address(), 2s).value();
  auto s = listener.accept(2s).value();
  std::error_code got;
  std::thread reader([&] {
    char buf[4];
    got = s.read_some(std::span(buf)).error;
  });
  std::this_thread::sleep_for(20ms);
  // Close from a fiber of a runtime while a plain thread blocks in recv.
  bobbin::run([&] { s.close(); }, {.carriers = 1});
  reader.join();
  EXPECT_EQ(got, std::errc::operation_canceled);
}

}  // namespace
