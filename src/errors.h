// User-facing errors. Checks throw UserError with a message naming the file, option or parameter at
// fault; only the CLI's main catches, prints one line and exits non-zero (DESIGN.md "Errors").
#pragma once
#include <stdexcept>
#include <string>

namespace bs {

struct UserError : std::runtime_error {
  explicit UserError(const std::string& msg) : std::runtime_error(msg) {}
};

// A subcommand that already reported its failure (launch: a rank's exit code) leaves main() with it.
struct ExitCode {
  int code;
};

// First line of a LibTorch error without its C++ backtrace, for use inside a UserError message.
std::string torch_error_line(const std::exception& e);

}  // namespace bs
