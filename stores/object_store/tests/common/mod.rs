//! Shared helpers for the integration tests: the S3 test server's settings.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use rocket_kvsession::conformance::unique_prefix;
use rocket_kvsession_object_store::object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use rocket_kvsession_object_store::ObjectStoreKv;

/// The S3 server the test command started (`scripts/s3-server.sh`).
#[derive(Debug, Clone)]
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

/// The S3 server from the environment; `None` (after saying so) if the run
/// opted out with `KVSESSION_SKIP_S3=1`. Panics with a clear message if the
/// server is not configured and the run did not opt out.
pub fn s3_server(test: &str) -> Option<S3Server> {
    let endpoint = std::env::var("KVSESSION_S3_ENDPOINT").ok();
    if std::env::var("KVSESSION_SKIP_S3").is_ok_and(|v| v == "1") {
        eprintln!("{test}: skipped: KVSESSION_SKIP_S3=1");
        return None;
    }
    let Some(endpoint) = endpoint else {
        panic!(
            "{test}: KVSESSION_S3_ENDPOINT is not set. Start the S3 test server with \
             `eval \"$(bash scripts/s3-server.sh start STATE_DIR)\"` (or run `bash scripts/test.sh`), \
             or set KVSESSION_SKIP_S3=1 to skip the S3 tests"
        );
    };
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{test}: KVSESSION_S3_ENDPOINT is set but {name} is not (see scripts/s3-server.sh)"
            )
        })
    };
    Some(S3Server {
        endpoint,
        bucket: var("KVSESSION_S3_BUCKET"),
        access_key: var("AWS_ACCESS_KEY_ID"),
        secret_key: var("AWS_SECRET_ACCESS_KEY"),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
    })
}

impl S3Server {
    /// An S3 builder for the test bucket, with conditional writes
    /// (`If-None-Match: *` for create, `If-Match` for update) on.
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_region(&self.region)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
    }

    /// A store under a prefix of its own in the test bucket.
    pub fn store(&self, case: &str) -> ObjectStoreKv {
        let s3 = self.builder().build().expect("S3 store");
        let prefix = format!("tests/{}", unique_prefix(case).trim_end_matches('-'));
        ObjectStoreKv::new(Arc::new(s3), &prefix).expect("store")
    }

    /// The backend options for `ObjectStoreKv::from_url`.
    pub fn url_options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint.clone()),
            ("aws_allow_http", "true".to_owned()),
            ("aws_access_key_id", self.access_key.clone()),
            ("aws_secret_access_key", self.secret_key.clone()),
            ("aws_region", self.region.clone()),
        ]
    }
}
