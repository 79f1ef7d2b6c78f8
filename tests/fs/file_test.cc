// Files through io_uring: write/read round trip, positions, fsync, errors,
// and the bound on the kernel's worker threads that run fsyncs.
#include "bobbin/fs/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "tests/testing/runtime_fixture.h"
#include "tests/testing/threads.h"

namespace {

std::string temp_path(const char* tag) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/bobbin_" + tag + "_" + std::to_string(::getpid());
}

// The kernel's worker threads for one thread's rings are named
// "iou-wrk-<that thread's id>": how many each carrier has now.
std::map<std::string, int> kernel_workers_by_owner() {
  std::map<std::string, int> by_owner;
  for (const auto& [tid, name] : bobbin::testing::threads_by_tid()) {
    if (name.rfind("iou-wrk-", 0) == 0) by_owner[name.substr(8)]++;
  }
  return by_owner;
}

// 200 fibers on 2 carriers each write a file and fsync it (an fsync always
// goes to the kernel's workers), while a plain thread samples how many
// workers each carrier has. Returns the largest count seen for one carrier.
// Workers of an earlier runtime may still be listed while they exit; their
// owners' thread ids are not this runtime's carriers', so they are skipped.
int peak_kernel_workers_while_200_fibers_fsync(unsigned bounded) {
  bobbin::runtime_options o = bobbin::testing::carriers(2);
  o.io_workers_bounded = bounded;
  std::map<std::string, int> earlier = kernel_workers_by_owner();
  std::atomic<bool> done{false};
  std::atomic<int> peak{0};
  auto sample = [&] {
    for (const auto& [owner, n] : kernel_workers_by_owner()) {
      if (earlier.count(owner) == 0 && n > peak.load()) peak.store(n);
    }
  };
  std::thread sampler([&] {
    while (!done.load()) {
      sample();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const std::string dir = temp_path("workers");
  ::mkdir(dir.c_str(), 0700);
  bobbin::run(
      [&] {
        std::vector<bobbin::fiber<void>> writers;
        for (int i = 0; i < 200; i++) {
          writers.push_back(bobbin::spawn([&dir, i] {
            const std::string path = dir + "/" + std::to_string(i);
            std::vector<std::byte> data(65536, static_cast<std::byte>(i));
            auto f = bobbin::file::open(path, O_RDWR | O_CREAT | O_TRUNC, 0600).value();
            ASSERT_EQ(f.write_all(data).value(), data.size());
            ASSERT_TRUE(f.sync());
            ::unlink(path.c_str());
          }));
        }
        for (auto& w : writers) w.join();
        sample();  // idle workers stay a few seconds: the sampler may not have run
      },
      o);
  done.store(true);
  sampler.join();
  ::rmdir(dir.c_str());
  return peak.load();
}

void round_trip(const std::string& path) {
  std::vector<std::byte> data(200000);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<std::byte>(i * 31 + 7);
  {
    auto f = bobbin::file::open(path, O_RDWR | O_CREAT | O_TRUNC, 0600).value();
    ASSERT_EQ(f.write_all(data).value(), data.size());
    ASSERT_TRUE(f.sync());
    EXPECT_EQ(f.size().value(), data.size());
  }
  auto f = bobbin::file::open(path, O_RDONLY).value();
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(f.read_at(back, 0).value(), data.size());
  EXPECT_EQ(back, data);
  // Sequential reads advance the position and end with 0 bytes.
  size_t total = 0;
  std::vector<std::byte> chunk(65536);
  for (;;) {
    auto r = f.read_some(chunk);
    ASSERT_TRUE(r) << r.error.message();
    if (r.bytes == 0) break;
    total += r.bytes;
  }
  EXPECT_EQ(total, data.size());
  std::vector<std::byte> tail(10);
  EXPECT_EQ(f.read_at(tail, data.size() - 4).value(), 4u);
  ::unlink(path.c_str());
}

TEST(FileTest, RoundTripOnFiber) {
  bobbin::testing::run_on(2, [] { round_trip(temp_path("fiber")); });
}

TEST(FileTest, RoundTripOnPlainThread) { round_trip(temp_path("thread")); }

TEST(FileTest, OpenMissingFileReportsEnoent) {
  bobbin::testing::run_on(1, [] {
    auto f = bobbin::file::open("/nonexistent/bobbin/file");
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error(), std::errc::no_such_file_or_directory);
  });
}

TEST(FileTest, WriteAtOffsets) {
  bobbin::testing::run_on(1, [] {
    std::string path = temp_path("offsets");
    auto f = bobbin::file::open(path, O_RDWR | O_CREAT | O_TRUNC, 0600).value();
    std::string a = "hello", b = "world";
    ASSERT_TRUE(f.write_all_at(std::as_bytes(std::span(b)), 5));
    ASSERT_TRUE(f.write_all_at(std::as_bytes(std::span(a)), 0));
    std::vector<std::byte> back(10);
    ASSERT_EQ(f.read_at(back, 0).value(), 10u);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(back.data()), 10), "helloworld");
    ::unlink(path.c_str());
  });
}

// open_beneath() stays inside its directory whatever the path says, on a
// fiber (IORING_OP_OPENAT2) and on a plain thread (openat2).
void check_open_beneath() {
  std::string root = temp_path("beneath");
  ASSERT_EQ(std::system(("rm -rf " + root + " && mkdir -p " + root + "/sub && echo in > " + root + "/sub/a.txt && ln -s /etc/passwd " +
                         root + "/out && ln -s sub/a.txt " + root + "/inside").c_str()),
            0);
  auto dir = bobbin::file::open(root, O_RDONLY | O_DIRECTORY).value();
  EXPECT_TRUE(bobbin::file::open_beneath(dir, "sub/a.txt"));
  EXPECT_TRUE(bobbin::file::open_beneath(dir, "inside"));  // a symlink that stays inside
  EXPECT_TRUE(bobbin::file::open_beneath(dir, "sub/../sub/a.txt"));
  EXPECT_EQ(bobbin::file::open_beneath(dir, "../etc/passwd").error(), std::errc::cross_device_link);
  EXPECT_EQ(bobbin::file::open_beneath(dir, "sub/../../x").error(), std::errc::cross_device_link);
  EXPECT_EQ(bobbin::file::open_beneath(dir, "/etc/passwd").error(), std::errc::cross_device_link);
  EXPECT_EQ(bobbin::file::open_beneath(dir, "out").error(), std::errc::cross_device_link);
  EXPECT_EQ(bobbin::file::open_beneath(dir, "missing").error(), std::errc::no_such_file_or_directory);
  std::system(("rm -rf " + root).c_str());
}

TEST(FileTest, KernelWorkerThreadsStayWithinTheBound) {
  // runtime_options::io_workers_bounded: the kernel otherwise starts up to
  // 4 per CPU for each carrier (and up to RLIMIT_NPROC for unbounded work).
  if (const char* b = std::getenv("BOBBIN_BACKEND"); b != nullptr && std::string(b) == "epoll") {
    GTEST_SKIP() << "the kernel's io_uring workers: none on epoll (EpollBackendTest checks its own)";
  }
  const int unlimited = peak_kernel_workers_while_200_fibers_fsync(0);
  const int limited = peak_kernel_workers_while_200_fibers_fsync(2);
  std::printf("peak kernel workers per carrier: %d without a bound, %d with a bound of 2\n", unlimited, limited);
  EXPECT_GE(limited, 1) << "the fsyncs ran on the kernel's workers";
  EXPECT_LE(limited, 2) << "no carrier had more workers than the bound";
  // On a disk fast enough that 2 workers keep up, the bound has nothing to
  // hold back, and this run cannot tell it from no bound.
  if (unlimited <= 2) GTEST_SKIP() << "the kernel never needed more than 2 workers here";
  EXPECT_GT(unlimited, limited);
}

TEST(FileTest, OpenBeneathStaysInsideOnFiber) { bobbin::testing::run_on(1, [] { check_open_beneath(); }); }
TEST(FileTest, OpenBeneathStaysInsideOnPlainThread) { check_open_beneath(); }

}  // namespace
