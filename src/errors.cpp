// torch_error_line: the one line of a LibTorch error worth showing (errors.h).
#include "errors.h"

#include <c10/util/Exception.h>

namespace bs {

std::string torch_error_line(const std::exception& e) {
  std::string msg;
  if (auto* ce = dynamic_cast<const c10::Error*>(&e))
    msg = ce->what_without_backtrace();
  else
    msg = e.what();
  // Keep the most informative single line: LibTorch puts the reason first.
  auto nl = msg.find('\n');
  std::string first = msg.substr(0, nl);
  if (first.rfind("The following operation failed", 0) == 0 || first.empty()) {
    // TorchScript interpreter errors: the reason is on the last non-empty line.
    size_t end = msg.find_last_not_of("\n ");
    size_t start = msg.rfind('\n', end);
    first =
        msg.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
  }
  return first;
}

}  // namespace bs
