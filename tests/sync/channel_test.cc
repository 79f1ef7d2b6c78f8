// channel<T>: buffered, unbounded and rendezvous; close semantics;
// deadlines; 100,000 parked receivers; ping-pong across carriers.
#include "bobbin/sync/channel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/latch.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::channel;
using bobbin::channel_status;
using bobbin::testing::run_on;

TEST(ChannelTest, BufferedFifo) {
  run_on(1, [] {
    channel<int> ch(4);
    for (int i = 0; i < 4; i++) EXPECT_EQ(ch.send(i), channel_status::ok);
    int x = 99;
    EXPECT_EQ(ch.try_send(std::move(x)), channel_status::full);
    EXPECT_EQ(x, 99);  // a failed send leaves the value with the caller
    for (int i = 0; i < 4; i++) EXPECT_EQ(*ch.receive(), i);
    EXPECT_EQ(ch.try_receive(x), channel_status::empty);
  });
}

TEST(ChannelTest, CloseDeliversBufferedThenClosed) {
  run_on(1, [] {
    channel<std::string> ch(bobbin::unbounded);
    ch.send("a");
    ch.send("b");
    ch.close();
    EXPECT_EQ(ch.send("c"), channel_status::closed);
    EXPECT_EQ(*ch.receive(), "a");
    EXPECT_EQ(*ch.receive(), "b");
    EXPECT_FALSE(ch.receive().has_value());
    std::string s;
    EXPECT_EQ(ch.receive(s), channel_status::closed);
  });
}

TEST(ChannelTest, CloseWakesParkedSendersWithValueIntact) {
  run_on(2, [] {
    channel<std::unique_ptr<int>> ch(0);
    auto sender = bobbin::spawn([&] {
      auto p = std::make_unique<int>(7);
      auto st = ch.send(std::move(p));
      return std::make_pair(st, p != nullptr);
    });
    bobbin::this_fiber::sleep_for(5ms);
    ch.close();
    auto [st, still_have] = sender.join();
    EXPECT_EQ(st, channel_status::closed);
    EXPECT_TRUE(still_have);
  });
}

TEST(ChannelTest, RendezvousHandsOver) {
  run_on(2, [] {
    channel<int> ch(0);
    auto rx = bobbin::spawn([&] {
      long sum = 0;
      while (auto v = ch.receive()) sum += *v;
      return sum;
    });
    for (int i = 1; i <= 1000; i++) ASSERT_EQ(ch.send(i), channel_status::ok);
    ch.close();
    EXPECT_EQ(rx.join(), 500500);
  });
}

TEST(ChannelTest, ReceiveDeadline) {
  run_on(1, [] {
    channel<int> ch(1);
    int v;
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(ch.receive(v, 10ms), channel_status::timeout);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 10ms);
    ch.send(1);
    EXPECT_EQ(ch.send(2, 5ms), channel_status::timeout);
    EXPECT_EQ(ch.receive(v, 5ms), channel_status::ok);
    EXPECT_EQ(v, 1);
  });
}

TEST(ChannelTest, HundredThousandParkedReceiversAllWoken) {
  run_on(2, [] {
    constexpr int kFibers = bobbin::testing::max_live_fibers(100000);
    channel<int> ch(bobbin::unbounded);
    std::atomic<long> sum{0};
    std::atomic<int> closed_seen{0};
    std::vector<bobbin::fiber<>> fs;
    fs.reserve(kFibers);
    for (int i = 0; i < kFibers; i++) {
      fs.push_back(bobbin::spawn([&] {
        if (auto v = ch.receive()) sum += *v; else closed_seen++;
      }));
    }
    // Let them all park, then feed half and close for the rest.
    bobbin::this_fiber::sleep_for(50ms);
    for (int i = 0; i < kFibers / 2; i++) ch.send(1);
    ch.close();
    for (auto& f : fs) f.join();
    EXPECT_EQ(sum.load(), kFibers / 2);
    EXPECT_EQ(closed_seen.load(), kFibers / 2);
  });
}

TEST(ChannelTest, PingPongAcrossCarriers) {
  run_on(2, [] {
    channel<int> ping(0), pong(0);
    std::atomic<int> carriers_seen_mask{0};
    auto peer = bobbin::spawn([&] {
      while (auto v = ping.receive()) {
        carriers_seen_mask |= 1 << bobbin::this_fiber::carrier_index();
        pong.send(*v + 1);
      }
    });
    int v = 0;
    for (int i = 0; i < 20000; i++) {
      ASSERT_EQ(ping.send(std::move(v)), channel_status::ok);
      v = *pong.receive();
    }
    ping.close();
    peer.join();
    EXPECT_EQ(v, 20000);
  });
}

TEST(ChannelTest, ManyProducersManyConsumersStress) {
  for (int round = 0; round < 3; round++) {
    run_on(2, [] {
      channel<int> ch(8);
      std::atomic<long> sum{0};
      bobbin::wait_group producers;
      std::vector<bobbin::fiber<>> consumers;
      for (int c = 0; c < 16; c++) {
        consumers.push_back(bobbin::spawn([&] {
          while (auto v = ch.receive()) sum += *v;
        }));
      }
      for (int p = 0; p < 16; p++) {
        producers.add(1);
        bobbin::spawn([&] {
          for (int i = 1; i <= 2000; i++) ch.send(i);
          producers.done();
        }).detach();
      }
      producers.wait();
      ch.close();
      for (auto& c : consumers) c.join();
      EXPECT_EQ(sum.load(), 16L * 2000 * 2001 / 2);
    });
  }
}

TEST(ChannelTest, ThreadsAndFibersShareAChannel) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  channel<int> ch(4);
  auto consumer = rt->spawn([&] {
    long sum = 0;
    while (auto v = ch.receive()) sum += *v;
    return sum;
  });
  std::thread producer([&] {
    for (int i = 1; i <= 10000; i++) ch.send(i);
    ch.close();
  });
  producer.join();
  EXPECT_EQ(consumer.join(), 10000L * 10001 / 2);
}

}  // namespace
