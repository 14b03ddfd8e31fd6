//! A command's output on stdout.
//!
//! `println!` panics when stdout is closed (`hookline dlq list --json | head`). [`outln!`]
//! returns the write error instead, and `main` ends the command quietly (exit code 0, as
//! ripgrep does) when the error is a broken pipe: the reader has all it wanted.

/// `println!` that returns (with `?`) instead of panicking when stdout cannot be written.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))?
    };
}

/// Write one line to stdout.
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether an error comes from writing to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
