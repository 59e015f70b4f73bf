//! The `hgauto` command (see `hgauto --help`, and the README's "Command line").

fn main() {
    std::process::exit(hgauto_cli::main_with_args(std::env::args_os()));
}
