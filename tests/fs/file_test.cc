// Files through io_uring: write/read round trip, positions, fsync, errors.
#include "bobbin/fs/file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "bobbin/fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

std::string temp_path(const char* tag) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/bobbin_" + tag + "_" + std::to_string(::getpid());
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

TEST(FileTest, OpenBeneathStaysInsideOnFiber) { bobbin::testing::run_on(1, [] { check_open_beneath(); }); }
TEST(FileTest, OpenBeneathStaysInsideOnPlainThread) { check_open_beneath(); }

}  // namespace
