//! The `rapport` binary: see `rapport --help`.

fn main() -> std::process::ExitCode {
    match rapport::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
