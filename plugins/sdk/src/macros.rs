//! `filter!`, `transform!` and `sink!`: generate the world's bindings in the plugin's crate
//! and glue them to the plugin's type.
//!
//! The plugin value lives in a thread-local of the instance (a component instance is single
//! threaded): `init` creates it, every event borrows it.

/// Export a [`Filter`](crate::Filter) as the component's `filter` world.
#[macro_export]
macro_rules! filter {
    ($plugin:ty) => {
        $crate::__export!($plugin, Filter, (filter), without_http, {
            fn keep(event: Event) -> ::core::result::Result<bool, StageError> {
                let event = __from_wit(event);
                __with(|p| <__Plugin as $crate::Filter>::keep(p, &event))
            }
        });
    };
}

/// Export a [`Transform`](crate::Transform) as the component's `transform-changes` world
/// (the `transform` world's contract, plus outputs that are only changes).
#[macro_export]
macro_rules! transform {
    ($plugin:ty) => {
        $crate::__export!($plugin, Transform, (transform - changes), without_http, {
            fn apply_changes(
                event: Event,
            ) -> ::core::result::Result<::std::vec::Vec<Output>, StageError> {
                let event = __from_wit(event);
                __with(|p| <__Plugin as $crate::Transform>::apply_changes(p, event))
                    .map(|outputs| outputs.into_iter().map(__output).collect())
            }
        }
        fn __output(output: $crate::Output) -> Output {
            match output {
                $crate::Output::Whole(e) => Output::Whole(__to_wit(e)),
                $crate::Output::Changed(c) => Output::Changed(Changes {
                    type_: c.event_type,
                    headers: c.headers,
                    payload_patch: c.payload_patch.map(|p| p.to_string()),
                }),
            }
        });
    };
}

/// Export a [`Sink`](crate::Sink) as the component's `sink` world.
#[macro_export]
macro_rules! sink {
    ($plugin:ty) => {
        $crate::__export!($plugin, Sink, (sink), with_http, {
            fn deliver(event: Event) -> ::core::result::Result<(), StageError> {
                let event = __from_wit(event);
                __with(|p| <__Plugin as $crate::Sink>::deliver(p, &event))
            }
        });
    };
}

/// What `filter!`, `transform!` and `sink!` share: the module, the world's bindings, the
/// glue, and `init`; each adds its world's function (and any helpers after it).
#[doc(hidden)]
#[macro_export]
macro_rules! __export {
    ($plugin:ty, $trait:ident, ($($world:tt)*), $glue:ident, { $($function:tt)* } $($helpers:tt)*) => {
        #[doc(hidden)]
        #[allow(unused, clippy::all)]
        mod __hookline_plugin {
            use super::*;
            type __Plugin = $plugin;
            $crate::__private::bindings!($($world)*);
            $crate::__glue!($glue);
            struct __Export;
            impl Guest for __Export {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __init(config, <__Plugin as $crate::$trait>::new)
                }
                $($function)*
            }
            $($helpers)*
            export!(__Export);
        }
    };
}

/// Shared glue; expects `__Plugin` and the generated bindings in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! __glue {
    (without_http) => {
        $crate::__glue!(@common None);
    };
    (with_http) => {
        $crate::__glue!(@common Some(__http_send));

        fn __http_send(
            request: &$crate::http::Request,
        ) -> ::core::result::Result<$crate::http::Response, $crate::http::HttpError> {
            use hookline::plugin::http as wit;
            let request = wit::Request {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
            };
            match wit::send(&request) {
                Ok(r) => Ok($crate::http::Response {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }),
                Err(wit::HttpError::Denied(m)) => Err($crate::http::HttpError::Denied(m)),
                Err(wit::HttpError::Timeout(m)) => Err($crate::http::HttpError::Timeout(m)),
                Err(wit::HttpError::Failed(m)) => Err($crate::http::HttpError::Failed(m)),
                Err(wit::HttpError::TooLarge(m)) => Err($crate::http::HttpError::TooLarge(m)),
            }
        }
    };
    (@common $http:expr) => {
        ::std::thread_local! {
            static __STATE: ::core::cell::RefCell<::core::option::Option<__Plugin>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        fn __log(level: $crate::host::Level, message: &str) {
            use hookline::plugin::host::{self as wit, Level};
            let level = match level {
                $crate::host::Level::Trace => Level::Trace,
                $crate::host::Level::Debug => Level::Debug,
                $crate::host::Level::Info => Level::Info,
                $crate::host::Level::Warn => Level::Warn,
                $crate::host::Level::Error => Level::Error,
            };
            wit::log(level, message);
        }

        fn __increment(name: &str, by: u64) {
            hookline::plugin::host::increment(name, by);
        }

        fn __init(
            config: ::std::string::String,
            new: fn($crate::Config) -> ::core::result::Result<__Plugin, ::std::string::String>,
        ) -> ::core::result::Result<(), ::std::string::String> {
            $crate::__private::install($crate::__private::HostFns {
                log: __log,
                increment: __increment,
                http_send: $http,
            });
            let plugin = new($crate::Config::from_json(&config)?)?;
            __STATE.with(|s| *s.borrow_mut() = ::core::option::Option::Some(plugin));
            Ok(())
        }

        fn __with<R>(
            f: impl FnOnce(&mut __Plugin) -> ::core::result::Result<R, $crate::Error>,
        ) -> ::core::result::Result<R, StageError> {
            __STATE
                .with(|s| match s.borrow_mut().as_mut() {
                    ::core::option::Option::Some(p) => f(p),
                    ::core::option::Option::None => {
                        Err($crate::Error::fatal("the host called the plugin before `init`"))
                    }
                })
                .map_err(|e| match e {
                    $crate::Error::Retryable(m) => StageError::Retryable(m),
                    $crate::Error::Fatal(m) => StageError::Fatal(m),
                })
        }

        fn __from_wit(e: Event) -> $crate::Event {
            $crate::Event {
                id: e.id,
                source: e.source,
                event_type: e.type_,
                received_at: e.received_at,
                headers: e.headers,
                payload: e.payload,
            }
        }

        fn __to_wit(e: $crate::Event) -> Event {
            Event {
                id: e.id,
                source: e.source,
                type_: e.event_type,
                received_at: e.received_at,
                headers: e.headers,
                payload: e.payload,
            }
        }
    };
}
