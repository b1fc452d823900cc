//! Thin entry point: parse the command line, set up telemetry, hand over to `cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = broker::cli::Cli::parse();
    broker::telemetry::init(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(broker::cli::run(args)) {
        Ok(status) => status,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "broker stopped with an error");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
