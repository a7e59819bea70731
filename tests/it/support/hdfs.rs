//! A real HDFS per test: Hadoop's MiniDFSCluster (one name node and one data node in one JVM,
//! on 127.0.0.1), run from `tests/hdfs/MiniHdfs.java` with the jars `scripts/test.sh` copies
//! from Maven Central into `.test-deps/hdfs/libs` (`tests/hdfs/pom.xml`).
//!
//! The name node takes a port of its own choosing and the program prints it, so clusters of
//! tests running side by side never race for one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::ChildGuard;

pub struct MiniHdfs {
    /// `hdfs://127.0.0.1:<port>`.
    pub url: String,
    // Dropped in order: the process before its directory.
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

fn hdfs_libs() -> PathBuf {
    let libs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/hdfs/libs");
    assert!(
        libs.join("hadoop-client-minicluster-3.5.0.jar").exists(),
        "Hadoop's MiniDFSCluster jars are not in {}: run ./scripts/test.sh, which copies them \
         from Maven Central (tests/hdfs/pom.xml)",
        libs.display()
    );
    libs
}

impl MiniHdfs {
    /// Starts a cluster and waits until it accepts writes (about 10 s here).
    pub fn start() -> MiniHdfs {
        let libs = hdfs_libs();
        let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hdfs/MiniHdfs.java");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("minihdfs.log");
        let mut process = ChildGuard(
            Command::new("java")
                .args(["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-cp"])
                .arg(format!("{}/*", libs.display()))
                .arg(&program)
                .arg(dir.path().join("cluster"))
                // Runs until its standard input closes: when this guard kills it, or when the
                // test process dies and the pipe with it.
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("java runs (scripts/test.sh installs a JDK)"),
        );
        let stdout = process.0.stdout.take().unwrap();
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            match ready.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("ready ") {
                        break url.to_owned();
                    }
                }
                Err(e) => panic!(
                    "MiniDFSCluster not ready within 120 s ({e}): {}",
                    tail(&log)
                ),
            }
        };
        MiniHdfs {
            url,
            _process: process,
            _dir: dir,
        }
    }

    /// Copies every file under `path` of the cluster into `into`, keeping the paths below
    /// `path`; returns how many.
    pub fn download(&self, path: &str, into: &Path) -> usize {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
            .with_url(&self.url)
            .with_io_runtime(runtime.handle().clone())
            .build()
            .unwrap();
        runtime.block_on(super::download_store(&store, path, into))
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
