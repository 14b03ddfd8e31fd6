//! The WASI p2 subset a plugin gets: clocks, random, an empty environment and arguments, no
//! preopened directories, stdout discarded, stderr captured (to report a panic's message).
//! Filesystem and socket imports are linked as traps ([`stub_denied`]): a plugin that
//! touches them fails its call, it does not get a file or a socket.
//!
//! `wasi:io` is linked through our own synchronous implementation instead of
//! `wasmtime_wasi`'s sync bindings, which block on a Tokio runtime for every blocking
//! stream call — and panic when that call comes from a thread driving Tokio tasks, which
//! is where filters and transforms run. Plugins' streams are memory pipes and sinks that
//! are always ready, so each "blocking" call is a non-blocking one; waiting on a pollable
//! (`wasi:io/poll`) traps: a plugin has nothing to wait for.

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiView, cli, clocks, filesystem, random};

type OutStream = streams::OutputStream;
type InStream = streams::InputStream;

/// Link the subset into `l`.
pub(crate) fn add_to_linker<T: WasiView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    use cli::WasiCliView as _;
    use clocks::WasiClocksView as _;
    use filesystem::WasiFilesystemView as _;
    use random::WasiRandomView as _;
    use wasmtime_wasi::p2::bindings::{cli as c, clocks as k, filesystem as f, random as r};

    k::wall_clock::add_to_linker::<T, clocks::WasiClocks>(l, T::clocks)?;
    k::monotonic_clock::add_to_linker::<T, clocks::WasiClocks>(l, T::clocks)?;
    f::preopens::add_to_linker::<T, filesystem::WasiFilesystem>(l, T::filesystem)?;
    r::random::add_to_linker::<T, random::WasiRandom>(l, T::random)?;
    r::insecure::add_to_linker::<T, random::WasiRandom>(l, T::random)?;
    r::insecure_seed::add_to_linker::<T, random::WasiRandom>(l, T::random)?;
    c::exit::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::environment::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::stdin::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::stdout::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::stderr::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::terminal_input::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::terminal_output::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::terminal_stdin::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::terminal_stdout::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    c::terminal_stderr::add_to_linker::<T, cli::WasiCli>(l, T::cli)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    poll::add_to_linker::<T, Io>(l, |t| Streams(t.ctx().table))?;
    streams::add_to_linker::<T, Io>(l, |t| Streams(t.ctx().table))?;
    Ok(())
}

/// Interfaces a plugin may import (Rust's standard library does) but never use.
const DENIED: &[&str] = &["wasi:filesystem/types@", "wasi:sockets/"];

/// Link the component's imports of [`DENIED`] interfaces, at the versions it imports, as
/// functions that trap. (wasmtime's `define_unknown_imports_as_traps` would also shadow the
/// interfaces linked above whenever the plugin imports a different 0.2.x version, which
/// semver matching otherwise resolves.)
pub(crate) fn stub_denied<T: 'static>(
    linker: &mut Linker<T>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;

    struct Denied;
    let engine = component.engine();
    for (name, item) in component.component_type().imports(engine) {
        if !DENIED.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut li = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let full = format!("{name}#{export}");
                    li.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::format_err!(
                            "plugins have no filesystem or network access (called `{full}`)"
                        ))
                    })?;
                }
                ComponentItem::Resource(_) => {
                    li.resource(export, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

struct Io;

impl HasData for Io {
    type Data<'a> = Streams<'a>;
}

/// Synchronous `wasi:io` over the store's resource table.
pub(crate) struct Streams<'a>(&'a mut ResourceTable);

fn lost(e: wasmtime::component::ResourceTableError) -> StreamError {
    StreamError::Trap(e.into())
}

fn no_waiting() -> wasmtime::Error {
    wasmtime::format_err!("plugins cannot wait on I/O (wasi:io/poll is not available)")
}

impl streams::Host for Streams<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, err)
    }
}

impl streams::HostOutputStream for Streams<'_> {
    fn drop(&mut self, stream: Resource<OutStream>) -> wasmtime::Result<()> {
        self.0.delete(stream)?;
        Ok(())
    }

    fn check_write(&mut self, stream: Resource<OutStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<OutStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    /// Writes what the stream takes now and drops the rest: plugin output is diagnostics
    /// (a panic message), bounded by the pipe's capacity.
    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let s = self.0.get_mut(&stream).map_err(lost)?;
        let room = s.check_write()?;
        let n = bytes.len().min(room);
        if n > 0 {
            s.write(Bytes::copy_from_slice(&bytes[..n]))?;
        }
        s.flush()
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutStream>,
        len: u64,
    ) -> StreamResult<()> {
        let s = self.0.get_mut(&stream).map_err(lost)?;
        let room = s.check_write()?;
        let n = usize::try_from(len).unwrap_or(usize::MAX).min(room);
        if n > 0 {
            s.write(Bytes::from(vec![0; n]))?;
        }
        s.flush()
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<OutStream>) -> StreamResult<()> {
        self.0.get_mut(&stream).map_err(lost)?.flush()
    }

    fn splice(
        &mut self,
        dst: Resource<OutStream>,
        src: Resource<InStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutStream>,
        src: Resource<InStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }
}

impl streams::HostInputStream for Streams<'_> {
    fn drop(&mut self, stream: Resource<InStream>) -> wasmtime::Result<()> {
        self.0.delete(stream)?;
        Ok(())
    }

    fn read(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<Vec<u8>> {
        let s = self.0.get_mut(&stream).map_err(lost)?;
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(s.read(n)?.to_vec())
    }

    fn skip(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn subscribe(&mut self, stream: Resource<InStream>) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl poll::Host for Streams<'_> {
    fn poll(&mut self, _: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        Err(no_waiting())
    }
}

impl poll::HostPollable for Streams<'_> {
    fn ready(&mut self, _: Resource<DynPollable>) -> wasmtime::Result<bool> {
        Err(no_waiting())
    }

    fn block(&mut self, _: Resource<DynPollable>) -> wasmtime::Result<()> {
        Err(no_waiting())
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.0, pollable)
    }
}
