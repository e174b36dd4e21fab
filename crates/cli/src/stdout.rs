//! Standard output of the CLI. A reader that stops early (`suanli … | head`) closes the pipe:
//! the command then ends quietly with status 0, as the reader asked for no more, instead of
//! panicking on the next line. Every line the CLI prints goes through [`outln!`].

use std::io::Write;

/// `println!` for the CLI's commands: on a closed standard output the process ends quietly
/// with status 0; on any other write error it says so and ends with status 1.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

/// Writes one line to standard output (see [`outln!`]).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}
