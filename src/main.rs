//! The `rapport` binary: see `rapport --help`.

/// mimalloc: the ingest path allocates small strings per event; glibc malloc showed up at ~19 % of
/// server CPU under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match rapport::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `rapport top … | head`: the reader had what it wanted.
        Err(error) if rapport::cli::is_stdout_closed(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
