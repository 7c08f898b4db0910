//! The `kiln` binary: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    kiln::cli::main()
}
