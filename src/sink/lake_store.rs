//! Where the Parquet lake lives: the object store a lake URL names, and a deadline on every
//! operation on it.
//!
//! `file://` (and plain paths) are always built in; `s3://` with the `s3` cargo feature and
//! `hdfs://` / `viewfs://` with the `hdfs` feature (both on by default). HDFS goes through
//! `hdfs-native`, a pure-Rust client: no JVM or libhdfs at run time. It reads the cluster's
//! `core-site.xml` and `hdfs-site.xml` from `$HADOOP_CONF_DIR` (name services, HA name nodes,
//! viewfs mount tables) and the user from `$HADOOP_USER_NAME` (else the login name).
//!
//! **Why a deadline on every operation.** A store that does not answer must fail the write
//! within a bounded time, so the pipeline can retry or stop with a clear error. HDFS's client
//! retries a name node 15 times with back-off (three minutes for a closed port) and waits a
//! minute on each socket that accepts and says nothing; an S3 endpoint behind a dropped route
//! hangs as long as the OS lets it.

use std::future::Future;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::debug;

use thiserror::Error;

/// What can go wrong opening a lake or with an operation on it.
#[derive(Debug, Error)]
pub enum LakeError {
    #[error("parquet sink URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{operation} on {url}")]
    Store {
        url: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("{operation} on {url}: no answer within {after:?} (the sink's `timeout`)")]
    Timeout {
        url: String,
        operation: &'static str,
        after: std::time::Duration,
    },
    #[error("cannot start the object-store runtime")]
    Runtime(#[source] std::io::Error),
}

/// An opened lake: the store, the lake's root inside it, and how operations run on it.
pub(crate) struct LakeStore {
    /// The lake's URL, for errors.
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub root: StorePath,
    /// The lake's directory when it is local: where a killed upload leaves its staging file.
    pub local_dir: Option<std::path::PathBuf>,
    /// The process's runtime: HDFS's client keeps its connections' reader tasks on it, and
    /// its worker threads run them between the sink's calls too.
    runtime: &'static tokio::runtime::Runtime,
    timeout: std::time::Duration,
}

impl LakeStore {
    /// Opens the store `url` names (already a URL: see `lake_url`).
    pub fn open(url: &str, timeout: std::time::Duration) -> Result<LakeStore, LakeError> {
        let invalid = |reason: String| LakeError::Url {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        let runtime = crate::runtime::runtime().map_err(LakeError::Runtime)?;
        let mut local_dir = None;
        let (store, root): (Arc<dyn ObjectStore>, StorePath) = match parsed.scheme() {
            "hdfs" | "viewfs" => open_hdfs(&parsed, runtime.handle()).map_err(invalid)?,
            scheme => {
                if scheme == "file" {
                    // object_store's local store wants the directory to exist.
                    let dir = parsed
                        .to_file_path()
                        .map_err(|()| invalid("not an absolute file path".into()))?;
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
                    local_dir = Some(dir);
                }
                // Object-store settings come from the environment the way their own tools
                // read them (AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT ...); unknown keys
                // are ignored.
                let settings = std::env::vars().filter(|(key, _)| key.starts_with("AWS_"));
                let (store, root) =
                    object_store::parse_url_opts(&parsed, settings).map_err(|e| {
                        invalid(format!(
                            "{e} (supported: file:///PATH; s3://BUCKET/PREFIX, built with the \
                             s3 feature; hdfs://NAMENODE:PORT/PATH and viewfs://CLUSTER/PATH, \
                             built with the hdfs feature)"
                        ))
                    })?;
                (Arc::from(store), root)
            }
        };
        Ok(LakeStore {
            url: url.to_owned(),
            store,
            root,
            local_dir,
            runtime,
            timeout,
        })
    }

    /// Uploads whole files, several at a time, each under the deadline; the first failure fails
    /// the lot (the pipeline then rewinds to its checkpoint, and `begin` deletes what did land).
    pub fn upload_all(&self, files: Vec<(StorePath, PutPayload)>) -> Result<(), LakeError> {
        if files.is_empty() {
            return Ok(());
        }
        let store = &self.store;
        let timeout = self.timeout;
        let uploads =
            futures_util::stream::iter(files.into_iter().map(|(path, bytes)| async move {
                match tokio::time::timeout(timeout, store.put(&path, bytes)).await {
                    Ok(Ok(_)) => {
                        debug!(%path, "Parquet file written.");
                        Ok(())
                    }
                    Ok(Err(source)) => Err(Failure::Store(source)),
                    Err(_elapsed) => Err(Failure::Timeout),
                }
            }))
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect::<()>();
        self.runtime
            .block_on(uploads)
            .map_err(|failure| self.error("upload", failure))
    }

    /// Runs one store operation, failing it once the deadline passes.
    pub fn run<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, LakeError> {
        // Built inside the runtime: a timer needs the runtime's clock.
        let bounded = async {
            match tokio::time::timeout(self.timeout, future).await {
                Ok(result) => result.map_err(Failure::Store),
                Err(_elapsed) => Err(Failure::Timeout),
            }
        };
        self.runtime
            .block_on(bounded)
            .map_err(|failure| self.error(operation, failure))
    }

    fn error(&self, operation: &'static str, failure: Failure) -> LakeError {
        match failure {
            Failure::Store(source) => LakeError::Store {
                url: self.url.clone(),
                operation,
                source,
            },
            Failure::Timeout => LakeError::Timeout {
                url: self.url.clone(),
                operation,
                after: self.timeout,
            },
        }
    }
}

/// How one operation failed, before it is named.
enum Failure {
    Store(object_store::Error),
    Timeout,
}

/// Uploads at once, at most: a checkpoint writes one file per partition it touched, and each
/// upload mostly waits (on S3, a round trip; on HDFS, the name node's acknowledgement that the
/// file is complete, which `hdfs-native` polls from 0.5 s on).
const PARALLEL_UPLOADS: usize = 8;

/// An HDFS or viewfs store for `url`; the lake's root is the URL's path.
#[cfg(feature = "hdfs")]
fn open_hdfs(
    url: &url::Url,
    runtime: &tokio::runtime::Handle,
) -> Result<(Arc<dyn ObjectStore>, StorePath), String> {
    use hdfs_native_object_store::HdfsObjectStoreBuilder;

    let mut builder = HdfsObjectStoreBuilder::new().with_io_runtime(runtime.clone());
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => {
            builder = builder.with_url(format!("{}://{host}:{port}", url.scheme()));
        }
        (Some(host), None) => builder = builder.with_url(format!("{}://{host}", url.scheme())),
        // `hdfs:///path`: the cluster's `fs.defaultFS`, as Hadoop's own clients read it.
        (None, _) if url.scheme() == "hdfs" => {}
        (None, _) => return Err("names no cluster (viewfs://CLUSTER/PATH)".into()),
    }
    if url.scheme() == "hdfs" && url.port().is_some() {
        // One name node by address: nothing to fail over to, so the client's 15 attempts
        // (minutes against a closed port) only delay the error. A name service (no port) keeps
        // its configured fail-over.
        builder = builder.with_config([("dfs.client.failover.max.attempts", "1")]);
    }
    let store = builder.build().map_err(|e| match url.host_str() {
        None => {
            format!("{e} (hdfs:///PATH takes fs.defaultFS from $HADOOP_CONF_DIR/core-site.xml)")
        }
        Some(_) => e.to_string(),
    })?;
    Ok((Arc::new(store), StorePath::from(url.path())))
}

#[cfg(not(feature = "hdfs"))]
fn open_hdfs(
    _url: &url::Url,
    _runtime: &tokio::runtime::Handle,
) -> Result<(Arc<dyn ObjectStore>, StorePath), String> {
    Err("this build has no HDFS support: build with the hdfs feature (on by default)".into())
}
