# One precompiled header (LibTorch is the expensive include) built once and reused by every target,
# plus the common warning flags. Keeps a 2-core clean build short.
add_library(blocksharp_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(blocksharp_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(blocksharp_pch PRIVATE -Wall -Wextra)
target_precompile_headers(blocksharp_pch PRIVATE <torch/torch.h> <torch/script.h> <vector> <string> <memory>)

function(blocksharp_setup_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  target_precompile_headers(${target} REUSE_FROM blocksharp_pch)
endfunction()
