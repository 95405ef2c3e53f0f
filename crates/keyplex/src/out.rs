//! What the commands print. `println!` panics when standard output is a closed pipe
//! (`keyplex audit | head -1`: "failed printing to stdout: Broken pipe", exit 101); here a
//! failed write is an ordinary error, and `main` ends quietly when it is a closed pipe: the
//! reader has stopped reading, so there is no one left to tell.

use std::fmt;
use std::io::{self, Write as _};

/// Writes one line to standard output; an error when it cannot (a closed pipe).
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    // Standard output only buffers up to a newline, but flushing here makes a closed pipe
    // this line's error rather than a silent loss at exit.
    out.flush()
}

/// Writes one line to standard error, ignoring failure: notes are for a person, and when
/// nobody reads standard error the command's answer still matters.
pub fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// `println!` that returns an `io::Result` instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! noteln {
    ($($arg:tt)*) => {
        $crate::out::note(format_args!($($arg)*))
    };
}

pub(crate) use {noteln, outln};

/// True when `error` comes from writing to a pipe whose reader has gone.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
