#pragma once
// Errors are values: a stable machine-readable code (also sent on the wire in replies and
// progress events) plus a human message that gains context as it travels up.
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace gantry {

struct Error {
  std::string code;     // e.g. "bad_signature", "io", "hash_mismatch"
  std::string message;  // precise, for an operator

  Error WithContext(std::string_view context) const {
    return Error{code, std::string(context) + ": " + message};
  }
  std::string String() const { return code + ": " + message; }
};

template <class T>
using Expected = tl::expected<T, Error>;
using ExpectedVoid = tl::expected<void, Error>;
using Unexpected = tl::unexpected<Error>;

inline Unexpected Fail(std::string code, std::string message) {
  return Unexpected(Error{std::move(code), std::move(message)});
}

}  // namespace gantry
