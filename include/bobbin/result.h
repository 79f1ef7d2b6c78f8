// bobbin/result.h
//
// How bobbin's data-plane calls (network, files) report their outcome.
//
//   bobbin::result<T>  a value or a std::error_code, like std::expected.
//   bobbin::io_result  a byte count and an error code, both meaningful at once:
//                      a call that moved 100 bytes and then hit ECONNRESET
//                      reports bytes == 100 and error == ECONNRESET, so partial
//                      progress is never lost.
//
// Error codes are errno values in std::system_category(), kept exactly as the
// kernel returned them (ECONNRESET and ECONNREFUSED stay distinct), plus:
//   std::errc::timed_out            the call's deadline passed
//   std::errc::operation_canceled   the socket or file was close()d meanwhile,
//                                   or the calling fiber was cancelled
//                                   (fiber::request_stop)
//   bobbin::io_errc::unexpected_eof read_exact() met end of stream early
//
// Usage:
//
//   bobbin::io_result r = stream.write_all(data);
//   if (!r) log("sent %zu of %zu: %s", r.bytes, data.size(), r.error.message());
//
//   auto s = bobbin::tcp_stream::connect(addr, 1s).value();  // throws on error
//
// Neither type allocates; no call reads errno after it may have parked (errno
// is per carrier thread and a fiber may resume on another one).
#ifndef BOBBIN_RESULT_H_
#define BOBBIN_RESULT_H_

#include <cstddef>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

#include "bobbin/config.h"

namespace bobbin {

// Errors bobbin adds to errno's.
enum class io_errc {
  unexpected_eof = 1,  // the peer closed before read_exact() got all it asked for
};
BOBBIN_API const std::error_category& io_category() noexcept;
inline std::error_code make_error_code(io_errc e) noexcept { return {static_cast<int>(e), io_category()}; }

inline std::error_code errno_code(int err) noexcept { return {err, std::system_category()}; }

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : has_value_(true) { new (&value_) T(std::move(value)); }  // NOLINT
  result(std::error_code error) : error_(error), has_value_(false) {}        // NOLINT
  result(const result& o) : error_(o.error_), has_value_(o.has_value_) {
    if (has_value_) new (&value_) T(o.value_);
  }
  result(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
      : error_(o.error_), has_value_(o.has_value_) {
    if (has_value_) new (&value_) T(std::move(o.value_));
  }
  result& operator=(result o) {
    this->~result();
    new (this) result(std::move(o));
    return *this;
  }
  ~result() {
    if (has_value_) value_.~T();
  }

  bool has_value() const noexcept { return has_value_; }
  explicit operator bool() const noexcept { return has_value_; }
  std::error_code error() const noexcept { return error_; }

  // The value; throws std::system_error carrying error() if there is none.
  T& value() & {
    throw_if_error();
    return value_;
  }
  T&& value() && {
    throw_if_error();
    return std::move(value_);
  }
  const T& value() const& {
    throw_if_error();
    return value_;
  }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }

  void throw_if_error() const {
    if (!has_value_) throw std::system_error(error_);
  }

 private:
  union {
    T value_;
  };
  std::error_code error_;
  bool has_value_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(std::error_code error) : error_(error) {}  // NOLINT
  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return !error_; }
  std::error_code error() const noexcept { return error_; }
  void value() const { throw_if_error(); }
  void throw_if_error() const {
    if (error_) throw std::system_error(error_);
  }

 private:
  std::error_code error_;
};

struct [[nodiscard]] io_result {
  std::size_t bytes = 0;  // moved before the call returned, even on error
  std::error_code error;  // empty on success

  explicit operator bool() const noexcept { return !error; }
  // Throws std::system_error on error; returns the byte count otherwise.
  std::size_t value() const {
    if (error) throw std::system_error(error);
    return bytes;
  }
};

}  // namespace bobbin

namespace std {
template <>
struct is_error_code_enum<bobbin::io_errc> : true_type {};
}  // namespace std

#endif  // BOBBIN_RESULT_H_
