//! `mpr`: parses the command line and hands over to [`mpr::cli::main`].

use clap::Parser;

// mimalloc: resolve serving is allocation-heavy (request parsing, JSON), and glibc's malloc
// and free were about 13 % of the server's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = mpr::cli::Cli::parse();
    std::process::exit(mpr::cli::main(cli));
}
