//! Generates a Hookline WASM plugin's bindings in the plugin's own crate.
//!
//! Used through `hookline-plugin-sdk`'s `filter!`, `transform!` and `sink!` macros, never
//! directly. The bindings have to be generated in the plugin's crate, not in the SDK: each
//! world's type information travels in a custom section of the object that generated it, and
//! a plugin must carry exactly one world's. So this macro hands `wit_bindgen::generate!` the
//! WIT package from `plugins/wit` (embedded here at build time) and the world to use.

use proc_macro::TokenStream;

/// The WIT package, `plugins/wit/hookline.wit`. `wit/hookline.wit` in this crate is a
/// symbolic link to it, so the crate packages (and `hookline plugin new` embeds it) whole.
const WIT: &str = include_str!("../wit/hookline.wit");

/// `__wit_bindings!(transform)` expands to `wit_bindgen::generate!` for that world.
#[proc_macro]
pub fn __wit_bindings(input: TokenStream) -> TokenStream {
    // `transform-changes` arrives as three tokens, spaced out.
    let world: String = input.to_string().split_whitespace().collect();
    if !matches!(world.as_str(), "filter" | "transform-changes" | "sink") {
        return r#"compile_error!("expected `filter`, `transform-changes` or `sink`");"#
            .parse()
            .unwrap_or_default();
    }
    format!(
        r#"::hookline_plugin_sdk::__private::wit_bindgen::generate!({{
            inline: {wit:?},
            world: "hookline:plugin/{world}@0.1.0",
            runtime_path: "::hookline_plugin_sdk::__private::wit_bindgen::rt",
        }});"#,
        wit = WIT,
    )
    .parse()
    .unwrap_or_default()
}
