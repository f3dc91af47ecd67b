// Progress bar: redrawn at most 10 times a second with \r, cleared on finish.
#include "progress.h"

#include <unistd.h>

#include <cstdio>

#include "distributed.h"

namespace bs {

bool Progress::enabled() { return isatty(STDERR_FILENO) != 0 && dist::is_main(); }

Progress::Progress(std::string label, int64_t total)
    : m_label(std::move(label)), m_total(total), m_on(enabled()), m_start(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, const std::string& status) {
  if (!m_on) return;
  auto now = std::chrono::steady_clock::now();
  if (m_open && (m_total <= 0 || done < m_total) && now - m_last < std::chrono::milliseconds(100)) return;
  m_last = now;
  const double secs = std::chrono::duration<double>(now - m_start).count();
  if (m_total <= 0) {  // open-ended work: a counter
    std::fprintf(stderr, "\r\033[K%s %lld %s", m_label.c_str(), static_cast<long long>(done), status.c_str());
    std::fflush(stderr);
    m_open = true;
    return;
  }
  const int width = 24;
  const int filled = m_total > 0 ? static_cast<int>(width * done / m_total) : 0;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  const double rate = secs > 0 ? done / secs : 0.0;
  const double eta = rate > 0 ? (m_total - done) / rate : 0.0;
  std::fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %.1f/s eta %.0fs %s", m_label.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(m_total), rate, eta, status.c_str());
  std::fflush(stderr);
  m_open = true;
}

void Progress::finish() {
  if (m_on && m_open) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  m_open = false;
}

}  // namespace bs
