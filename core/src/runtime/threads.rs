//! Where pipeline runs execute: threads of their own, apart from the listener's.

use tracing::warn;

/// The threads pipeline runs execute on: a runtime of their own, apart from the one that
/// accepts connections and answers webhooks, so that a stage that computes for long (a CEL
/// expression over a huge list, a WASM plugin up to its deadline) takes CPU from other runs,
/// not from the listener. As many threads as cores; made once per process.
pub(super) fn stage_threads() -> tokio::runtime::Handle {
    static STAGES: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let built = STAGES.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("hookline-stages")
            .enable_all()
            .build()
            .map_err(|e| warn!(error = %e, "cannot start the stage threads; pipelines run on the listener's"))
            .ok()
    });
    match built {
        Some(rt) => rt.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}
