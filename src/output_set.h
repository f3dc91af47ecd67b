// OutputSet: files that must appear together (profile.h5 beside the configs derived from it; train's
// final_params.h5 beside train_summary.json). Each is written under a temporary name; commit() first
// rewrites DIR/<name>.manifest.json as incomplete, then renames every file into place, then rewrites
// the manifest as complete. Every file carries the set's id "<name>-<hex>" (HDF5 attribute `set_id`,
// JSON key "set_id"), so a reader can tell a complete set from a mixed one left by a crash
// (check_output_set).
#pragma once
#include <string>
#include <vector>

namespace bs {

class OutputSet {
 public:
  OutputSet(std::string dir, std::string name);  // name: "profile", "train" (no '-')
  ~OutputSet();                                  // removes staged temporary files unless committed
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;

  const std::string& id() const { return m_id; }
  // Records a finished temporary file `tmp` that commit() renames to `path` (inside the set's dir).
  void stage(const std::string& path, const std::string& tmp);
  // Writes `text` to a temporary name beside `path` and stages it; UserError naming `path` on failure.
  void write_text(const std::string& path, const std::string& text);
  // Rank 0 only. UserError naming the file on any failure.
  void commit();
  // Whether DIR/<name>.manifest.json says a complete set (e.g. a finished training run).
  static bool complete(const std::string& dir, const std::string& name);

 private:
  void step();  // test hook: BLOCKSHARP_TEST_KILL_AT_STEP=N raises SIGKILL before the N-th step
  std::string manifest() const { return m_dir + "/" + m_name + ".manifest.json"; }
  std::string m_dir, m_name, m_id;
  std::vector<std::pair<std::string, std::string>> m_files;  // (path, tmp)
  bool m_committed = false;
  int m_step = 0;
};

// For `file` holding set id `id` ("<name>-<hex>"): UserError naming it when DIR/<name>.manifest.json
// beside it is incomplete (an interrupted write) or names another set (a mixed folder). No manifest:
// no check (a file copied elsewhere stands alone).
void check_output_set(const std::string& file, const std::string& id);

}  // namespace bs
