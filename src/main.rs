//! `mpr`: parses the command line and hands over to [`mpr::cli::main`].

use clap::Parser;

fn main() {
    let cli = mpr::cli::Cli::parse();
    std::process::exit(mpr::cli::main(cli));
}
