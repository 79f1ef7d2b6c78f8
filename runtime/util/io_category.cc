#include <string>

#include "bobbin/result.h"

namespace bobbin {
namespace {
class io_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "bobbin.io"; }
  std::string message(int ev) const override {
    switch (static_cast<io_errc>(ev)) {
      case io_errc::unexpected_eof: return "unexpected end of stream";
    }
    return "unknown bobbin.io error";
  }
};
}  // namespace

const std::error_category& io_category() noexcept {
  static const io_category_impl category;
  return category;
}
}  // namespace bobbin
