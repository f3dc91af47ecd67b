// A one-line progress bar on stderr when it is a terminal; silent when piped or redirected.
#pragma once
#include <chrono>
#include <string>

namespace bs {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  void update(int64_t done, const std::string& status = "");
  void finish();
  static bool enabled();

 private:
  std::string m_label;
  int64_t m_total;
  bool m_on, m_open = false;
  std::chrono::steady_clock::time_point m_start, m_last;
};

}  // namespace bs
