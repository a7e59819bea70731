//! The process's one tokio runtime. The pipeline runs on plain threads (the engine is
//! synchronous); what is asynchronous (database writes and checkpoints, the object store,
//! notifications, the Kafka admin client) and the web server all run here, so one reactor
//! drives every socket, and one database pool serves the sink, the dashboard and the notifier.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Worker threads: the pipeline's own threads do the heavy work; these wait on sockets, run the
/// web server's handlers and keep connections' background tasks (HDFS readers, pool upkeep)
/// going between the pipeline's calls.
const WORKERS: usize = 2;

/// The runtime, started on first use. Call `block_on` on it from plain threads only (the
/// pipeline's, a sink's writer, `main`), never from inside one of its tasks.
pub fn runtime() -> std::io::Result<&'static Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let started = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("tidewatch-io")
        .enable_all()
        .build()?;
    // Should another thread have started one meanwhile, this one is dropped unused.
    Ok(RUNTIME.get_or_init(|| started))
}
