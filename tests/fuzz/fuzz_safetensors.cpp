// libFuzzer harness: the safetensors reader (header parse, dtype/shape/offset checks, memory map,
// tensor copies) on arbitrary bytes. Only UserError may leave it; anything else is a finding.
#include "errors.h"
#include "fuzz_common.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = bs::fuzz::input_file(data, size, ".safetensors");
  try {
    bs::SafetensorsFile f(path, "fuzz");
    for (const auto& e : f.entries()) {
      const torch::Tensor t = f.tensor(e.name);
      if (t.numel() != static_cast<int64_t>(e.end - e.begin) / static_cast<int64_t>(t.element_size())) __builtin_trap();
    }
  } catch (const bs::UserError&) {}
  return 0;
}
