// OutputSet and check_output_set.
#include "output_set.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "distributed.h"
#include "errors.h"
#include "atomic_file.h"
#include "json_file.h"

namespace bs {
namespace {

std::string base_name(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string dir_name(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
}

}  // namespace

OutputSet::OutputSet(std::string dir, std::string name) : m_dir(std::move(dir)), m_name(std::move(name)) {
  const auto ns = std::chrono::system_clock::now().time_since_epoch().count();
  std::ostringstream s;
  s << m_name << "-" << std::hex << static_cast<unsigned long long>(ns) << std::dec << "." << getpid();
  m_id = s.str();
}

bool OutputSet::complete(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name + ".manifest.json";
  if (access(path.c_str(), F_OK) != 0) return false;
  try {
    return read_json_file(path, "manifest").value("complete", false);
  } catch (const std::exception&) {
    return false;
  }
}

OutputSet::~OutputSet() {
  if (!m_committed)
    for (const auto& f : m_files) std::remove(f.second.c_str());
}

void OutputSet::stage(const std::string& path, const std::string& tmp) { m_files.emplace_back(path, tmp); }

void OutputSet::write_text(const std::string& path, const std::string& text) {
  if (!dist::is_main()) return;
  const std::string tmp = temp_name(path);
  m_files.emplace_back(path, tmp);  // staged first: removed on failure by the destructor
  write_text_file(tmp, text, path);
}

void OutputSet::step() {
  static const char* at = std::getenv("BLOCKSHARP_TEST_KILL_AT_STEP");
  if (at && std::atoi(at) == m_step) std::raise(SIGKILL);
  ++m_step;
}

void OutputSet::commit() {
  if (!dist::is_main()) return;
  const std::string manifest = this->manifest();
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : m_files) files.push_back(base_name(f.first));
  nlohmann::json m = {{"set_id", m_id}, {"complete", false}, {"files", files}};
  step();
  write_text_atomic(manifest, m.dump(2) + "\n");
  for (const auto& [path, tmp] : m_files) {
    step();
    publish(tmp, path);
  }
  m_committed = true;
  m["complete"] = true;
  step();
  write_text_atomic(manifest, m.dump(2) + "\n");
}

void check_output_set(const std::string& file, const std::string& id) {
  const auto dash = id.find('-');
  if (dash == std::string::npos || dash == 0) return;  // not an id this code wrote
  const std::string manifest = dir_name(file) + "/" + id.substr(0, dash) + ".manifest.json";
  if (access(manifest.c_str(), F_OK) != 0) return;
  const nlohmann::json m = read_json_file(manifest, "manifest");
  const bool complete = m.value("complete", false);
  const std::string mid = m.contains("set_id") && m["set_id"].is_string() ? m["set_id"].get<std::string>() : "";
  if (!complete)
    throw UserError("'" + file + "': its output set was interrupted while being written (" + manifest +
                    " is incomplete); rerun the command that wrote it");
  if (mid != id)
    throw UserError("'" + file + "' is from another run than the other files beside it (" + manifest + " names set " +
                    mid + ", the file " + id + "); rerun the command that wrote them");
}

}  // namespace bs
