// Messages that name parameters, and torch_error_line: the one line of a LibTorch error worth showing (errors.h).
#include "errors.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <cstdlib>

namespace bs {

Message::Message(std::string text) {
  if (!text.empty()) m_pieces.emplace_back(false, std::move(text));
}

Message Message::parameter(std::string name) {
  Message m;
  m.m_pieces.emplace_back(true, std::move(name));
  return m;
}

Message& Message::operator+=(const Message& other) {
  m_pieces.insert(m_pieces.end(), other.m_pieces.begin(), other.m_pieces.end());
  return *this;
}

Message operator+(Message a, const Message& b) { return a += b; }

std::string Message::render(const std::function<std::string(const std::string&)>& name_of) const {
  std::string out;
  for (const auto& [is_parameter, text] : m_pieces) out += is_parameter ? name_of(text) : text;
  return out;
}

std::string Message::plain() const {
  return render([](const std::string& name) { return name; });
}

namespace {
std::function<std::string(const std::string&)>& parameter_names() {
  static std::function<std::string(const std::string&)> name_of = [](const std::string& p) { return p; };
  return name_of;
}
}  // namespace

void set_parameter_names(std::function<std::string(const std::string&)> name_of) {
  parameter_names() = std::move(name_of);
}

std::string spelled(const Message& m) { return m.render(parameter_names()); }

void warn(const Message& m) { std::fprintf(stderr, "blocksharp: warning: %s\n", spelled(m).c_str()); }

std::string flag_of(const std::string& parameter) {
  std::string flag = "--" + parameter;
  for (char& c : flag)
    if (c == '_') c = '-';
  return flag;
}

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

bool env_switch(const char* name) {
  const char* env = std::getenv(name);
  const std::string choice = env ? env : "1";
  if (choice != "0" && choice != "1") throw UserError(std::string(name) + ": expected 0 or 1, got '" + choice + "'");
  return choice == "1";
}

}  // namespace bs
