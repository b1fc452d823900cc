//! Load driver for the broker: wires the arguments to the scenarios and prints the results.

mod cli;
mod cookies;
mod cpu;
mod failure;
mod http;
mod oidc;
mod page;
mod pkce;
mod receiver;
mod scenarios;
mod setup;
mod stats;
mod steps;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;

use crate::stats::Report;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &cli::Args) -> anyhow::Result<()> {
    args.validate()?;
    // reqwest is built without a crypto provider so that `ring` stays out; aws-lc-rs serves rustls.
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow!("installing the rustls crypto provider"))?;
    if !args.server_pids.is_empty() || args.postgres {
        cpu::check_procfs()?;
    }
    let probe = Arc::new(cpu::CpuProbe::new(args.server_pids.clone(), args.postgres)?);
    let http = http::build_client(Duration::from_secs(args.request_timeout), args.concurrency)?;
    let broker = Arc::new(setup::connect(http, args).await?);

    println!("{}", Report::human_header());
    let reports = scenarios::run_all(args, broker, probe).await?;
    if args.markdown {
        println!("\n{}", Report::markdown_header());
        for report in &reports {
            println!("{}", report.markdown());
        }
    }
    Ok(())
}
