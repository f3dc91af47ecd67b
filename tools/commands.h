// Each subcommand registers itself on the CLI11 app; main() only dispatches and reports errors.
#pragma once
#include <CLI/CLI.hpp>

namespace bs {

void register_train(CLI::App& app);
void register_profile(CLI::App& app);
void register_structure(CLI::App& app);
void register_bench(CLI::App& app);
void register_config(CLI::App& app);
void register_launch(CLI::App& app);
void register_bench_optim(CLI::App& bench);  // a `bench` subcommand
void register_bench_dist(CLI::App& bench);   // a `bench` subcommand
void register_bench_train(CLI::App& bench);  // a `bench` subcommand

}  // namespace bs
