//! The node's role is used only when asked for: the real `uploader --check`
//! runs with no other credentials against a fake instance metadata service
//! on loopback (`AWS_EC2_METADATA_SERVICE_ENDPOINT`) that records every
//! request, and names the credential source without showing the credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use test_support::free_port;

const TOKEN: &str = "fake-imds-token";
const ROLE: &str = "fake-node-role";
const ACCESS_KEY_ID: &str = "ASIAFAKENODEROLEKEY1";
const SECRET: &str = "fake/node/role/secret/access/key/0123456";
const SESSION_TOKEN: &str = "fake-node-role-session-token";
/// IMDS's credentials paths: the role's name, then the role's credentials.
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

type Requests = Arc<Mutex<Vec<String>>>;

/// A fake IMDSv2 that hands out node-role credentials and records each
/// request as "METHOD /path".
struct FakeMetadata {
    endpoint: String,
    requests: Requests,
}

impl FakeMetadata {
    async fn start() -> Self {
        let requests = Requests::default();
        let app = Router::new().fallback(answer).with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn credential_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.contains("/meta-data/iam/"))
            .collect()
    }
}

async fn answer(State(requests): State<Requests>, method: Method, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    requests.lock().unwrap().push(format!("{method} {path}"));
    let role_path = format!("{CREDENTIALS_PATH}{ROLE}");
    match (method, path.as_str()) {
        (Method::PUT, "/latest/api/token") => {
            ([("x-aws-ec2-metadata-token-ttl-seconds", "21600")], TOKEN).into_response()
        }
        (Method::GET, CREDENTIALS_PATH) => ROLE.into_response(),
        (Method::GET, p) if p == role_path => serde_json::json!({
            "Code": "Success",
            "LastUpdated": "2026-11-28T00:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": ACCESS_KEY_ID,
            "SecretAccessKey": SECRET,
            "Token": SESSION_TOKEN,
            "Expiration": "2099-01-01T00:00:00Z",
        })
        .to_string()
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `uploader --check` with nothing but the given settings: no AWS
/// variables but the region, no profile files, instance metadata at the
/// fake, S3 at a loopback port nobody listens on.
async fn check(metadata: &FakeMetadata, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_uploader"));
    cmd.env_clear()
        .arg("--check")
        .args(args)
        // An empty home: no ~/.aws profile files.
        .env("HOME", home.path())
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata.endpoint)
        .env("S3_BUCKET", "captures")
        .env(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("SPOOL_DIR", home.path())
        .env("NODE_NAME", "test-node")
        .envs(extra_env.iter().copied());
    tokio::task::spawn_blocking(move || {
        let output = cmd.output().unwrap();
        drop(home);
        output
    })
    .await
    .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secrets(text: &str) {
    for secret in [ACCESS_KEY_ID, SECRET, SESSION_TOKEN, ROLE] {
        assert!(!text.contains(secret), "output shows {secret:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_metadata_is_not_asked_for_credentials_by_default() {
    let metadata = FakeMetadata::start().await;
    let output = check(&metadata, &[], &[]).await;
    let text = text(&output);

    assert!(
        !output.status.success(),
        "--check passed without credentials:\n{text}"
    );
    // Region comes from AWS_REGION and the key needs no instance id, so the
    // metadata service has no reason to be asked anything at all.
    assert_eq!(metadata.requests(), Vec::<String>::new(), "{text}");
    assert!(text.contains("no usable AWS credentials"), "{text}");
    assert!(
        text.contains("ALLOW_NODE_ROLE=true"),
        "the refusal names the opt-in:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_role_is_used_when_allowed_and_named_without_showing_it() {
    for (env, args) in [
        (&[("ALLOW_NODE_ROLE", "true")][..], &[][..]),
        (&[][..], &["--allow-node-role"][..]),
    ] {
        let metadata = FakeMetadata::start().await;
        let output = check(&metadata, env, args).await;
        let text = text(&output);

        let asked = metadata.credential_requests();
        assert!(
            asked.contains(&format!("GET {CREDENTIALS_PATH}")),
            "the node's role was not asked for ({env:?} {args:?}): {asked:?}\n{text}"
        );
        assert!(
            asked.contains(&format!("GET {CREDENTIALS_PATH}{ROLE}")),
            "the node role's credentials were not fetched: {asked:?}\n{text}"
        );
        assert!(
            text.contains("credentials=node role"),
            "source not named:\n{text}"
        );
        assert_no_secrets(&text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_credentials_are_named_and_instance_metadata_is_not_asked() {
    let metadata = FakeMetadata::start().await;
    let output = check(
        &metadata,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("ALLOW_NODE_ROLE", "true"),
        ],
        &[],
    )
    .await;
    let text = text(&output);

    assert!(
        text.contains("credentials=environment"),
        "source not named:\n{text}"
    );
    // The chain stops at the first source that has credentials.
    assert_eq!(
        metadata.credential_requests(),
        Vec::<String>::new(),
        "{text}"
    );
    assert_no_secrets(&text);
}
