//! The `plumbline` binary: everything lives in the library; see [`plumbline::cli`].

fn main() -> std::process::ExitCode {
    plumbline::cli::main()
}
