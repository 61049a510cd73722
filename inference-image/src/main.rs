use std::process::ExitCode;
use std::time::Duration;

use inference::config::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::from_env().command {
        Command::Serve(args) => match inference::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("inference: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Health(args) => {
            let url = args.resolved_url();
            match inference::health::check(&url, Duration::from_millis(args.timeout_ms)) {
                Ok(200) => ExitCode::SUCCESS,
                Ok(code) => {
                    eprintln!("inference health: {url} answered {code}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("inference health: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Card(args) => match inference::card_builder::build(&args) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("inference card: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
