// User-facing errors. Checks throw UserError with a message naming the file, parameter or value at
// fault; only a front end catches: the CLI prints one line and exits non-zero (DESIGN.md "Errors"),
// Python raises ValueError. The library names its parameters, never a front end's spelling of them:
// param("weight_decay") is a piece of the message that what() says as "weight_decay" and a front end
// renders its own way (the CLI as "--weight-decay", Python as its keyword).
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bs {

// Text with parameter names in it. Built with +, from strings and param().
class Message {
 public:
  Message() = default;
  Message(const char* text) : Message(std::string(text)) {}  // NOLINT: text converts implicitly
  Message(std::string text);                                 // NOLINT
  static Message parameter(std::string name);
  Message& operator+=(const Message& other);
  // The text with every parameter as name_of(its name); plain(): as its name.
  std::string render(const std::function<std::string(const std::string&)>& name_of) const;
  std::string plain() const;
  bool empty() const { return m_pieces.empty(); }

 private:
  std::vector<std::pair<bool, std::string>> m_pieces;  // (is a parameter, text or name)
};
Message operator+(Message a, const Message& b);
inline Message param(std::string name) { return Message::parameter(std::move(name)); }

struct UserError : std::runtime_error {
  explicit UserError(const Message& msg) : std::runtime_error(msg.plain()), message(msg) {}
  Message message;
};

// How this process's front end spells parameters in errors, warnings and descriptions: the CLI sets
// flag_of, Python its keywords; the library's names until one is set.
void set_parameter_names(std::function<std::string(const std::string&)> name_of);
// The message with parameters spelled as set_parameter_names says (for a library's progress lines).
std::string spelled(const Message& m);
// One line on stderr, "blocksharp: warning: ...", spelled.
void warn(const Message& m);

// How the CLI names a parameter: its flag ("trace_probes" -> "--trace-probes").
std::string flag_of(const std::string& parameter);

// A subcommand that already reported its failure (launch: a rank's exit code) leaves main() with it.
struct ExitCode {
  int code;
};

// First line of a LibTorch error without its C++ backtrace, for use inside a UserError message.
std::string torch_error_line(const std::exception& e);

// An on/off switch from the environment (BLOCKSHARP_HUGE_PAGES, BLOCKSHARP_LARGE_BLOCKS): unset or "1"
// true, "0" false, anything else a UserError "NAME: expected 0 or 1, got 'value'".
bool env_switch(const char* name);

}  // namespace bs
