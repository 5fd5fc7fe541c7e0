use std::process::ExitCode;

fn main() -> ExitCode {
    let code = match backstop::cli::parse(std::env::args_os()) {
        Ok(settings) => backstop::run(settings),
        Err(early_exit) => early_exit,
    };
    ExitCode::from(code)
}
