//! Failures a well-behaved registry never produces, served by the scripted
//! loopback server in `test_http`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::test_http::{serve, Reply};
use super::{PullError, Puller, RegistrySettings};
use crate::image::content::{ContentStore, Digest};
use crate::image::limits::{CONFIG_MAX, MANIFEST_MAX};
use crate::image::reference::Reference;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const STALL: Duration = Duration::from_millis(400);

struct Fixture {
    _dir: tempfile::TempDir,
    content: Arc<ContentStore>,
    puller: Puller,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let content = Arc::new(ContentStore::new(dir.path()).unwrap());
    let settings = RegistrySettings {
        stall_timeout: STALL,
        ..RegistrySettings::default()
    };
    let puller = Puller::new(settings, content.clone());
    Fixture {
        _dir: dir,
        content,
        puller,
    }
}

/// A one-layer image: routes for its manifest under `repo:tag`, and its
/// config and layer blobs as given (so tests can corrupt or stall them).
fn image_routes(
    repo: &str,
    config: Reply,
    layer: Reply,
) -> (HashMap<String, Reply>, String, String) {
    let config_bytes =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer_bytes = b"not really a tarball";
    let config_digest = Digest::of(config_bytes).to_string();
    let layer_digest = Digest::of(layer_bytes).to_string();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{layer_digest}"}}]}}"#,
        config_bytes.len(),
        layer_bytes.len()
    );
    let fill = |reply: Reply, bytes: &[u8]| match reply {
        Reply::Ok { content_type, body } if body.is_empty() => Reply::Ok {
            content_type,
            body: bytes.to_vec(),
        },
        other => other,
    };
    let routes = HashMap::from([
        (
            format!("/v2/{repo}/manifests/v1"),
            Reply::Ok {
                content_type: DOCKER_MANIFEST,
                body: manifest.into_bytes(),
            },
        ),
        (
            format!("/v2/{repo}/blobs/{config_digest}"),
            fill(config, config_bytes),
        ),
        (
            format!("/v2/{repo}/blobs/{layer_digest}"),
            fill(layer, layer_bytes),
        ),
    ]);
    (routes, config_digest, layer_digest)
}

/// Placeholder for "serve the right bytes".
fn good() -> Reply {
    Reply::Ok {
        content_type: "application/octet-stream",
        body: Vec::new(),
    }
}

fn reference(addr: std::net::SocketAddr, repo: &str) -> Reference {
    Reference::parse(&format!("{addr}/{repo}:v1")).unwrap()
}

fn ingest_is_empty(content: &ContentStore) -> bool {
    std::fs::read_dir(content.root().join("ingest"))
        .unwrap()
        .count()
        == 0
}

#[tokio::test]
async fn scripted_server_serves_a_good_image() {
    let f = fixture();
    let (routes, config, layer) = image_routes("ok/app", good(), good());
    let addr = serve(routes).await;
    let pulled = f
        .puller
        .pull(&reference(addr, "ok/app"), None)
        .await
        .unwrap();
    assert_eq!(pulled.config_digest, config);
    assert_eq!(pulled.layers[0].digest, layer);
    assert!(f.content.has(&config) && f.content.has(&layer));
}

#[tokio::test]
async fn stalled_blob_fails_with_stall_error_and_leaves_nothing() {
    let f = fixture();
    let stall = Reply::Stall {
        length: 1000,
        body: b"partial".to_vec(),
    };
    let (routes, _, layer) = image_routes("stall/app", good(), stall);
    let addr = serve(routes).await;
    let started = std::time::Instant::now();
    let err = f
        .puller
        .pull(&reference(addr, "stall/app"), None)
        .await
        .unwrap_err();
    assert!(err.is_stalled(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "pull of {addr}/stall/app:v1 stalled: no data for 400ms from http://{addr}/stall/app"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!f.content.has(&layer));
    assert!(ingest_is_empty(&f.content));
}

#[tokio::test]
async fn hanging_manifest_request_fails_as_stalled() {
    let f = fixture();
    let addr = serve(HashMap::from([(
        "/v2/hang/app/manifests/v1".to_owned(),
        Reply::Hang,
    )]))
    .await;
    let err = f
        .puller
        .pull(&reference(addr, "hang/app"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Stalled { .. }), "{err:?}");
}

#[tokio::test]
async fn corrupted_blob_is_a_digest_mismatch() {
    let f = fixture();
    let evil = Reply::Ok {
        content_type: "application/octet-stream",
        body: b"NOT REALLY A TARBALL".to_vec(),
    };
    let (routes, _, layer) = image_routes("evil/app", good(), evil);
    let addr = serve(routes).await;
    let err = f
        .puller
        .pull(&reference(addr, "evil/app"), None)
        .await
        .unwrap_err();
    match &err {
        PullError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &layer);
            assert_eq!(actual, &Digest::of(b"NOT REALLY A TARBALL").to_string());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!f.content.has(&layer));
    // The sibling download (the config) was cancelled with the pull; its
    // temp file is gone by the time the pull returns.
    assert!(ingest_is_empty(&f.content));
}

#[tokio::test]
async fn wrong_manifest_for_digest_is_refused() {
    let f = fixture();
    let (routes, _, _) = image_routes("liar/app", good(), good());
    let manifest = match &routes["/v2/liar/app/manifests/v1"] {
        Reply::Ok { body, .. } => body.clone(),
        _ => unreachable!(),
    };
    let claimed = Digest::of(b"some other manifest").to_string();
    let mut routes = routes;
    routes.insert(
        format!("/v2/liar/app/manifests/{claimed}"),
        Reply::Ok {
            content_type: DOCKER_MANIFEST,
            body: manifest,
        },
    );
    let addr = serve(routes).await;
    let r = Reference::parse(&format!("{addr}/liar/app@{claimed}")).unwrap();
    let err = f.puller.pull(&r, None).await.unwrap_err();
    assert!(matches!(err, PullError::DigestMismatch { .. }), "{err:?}");
    assert!(!f.content.has(&claimed));
}

#[tokio::test]
async fn schema1_manifest_is_unsupported() {
    let f = fixture();
    let schema1 = br#"{"schemaVersion":1,"name":"old/app","tag":"v1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let addr = serve(HashMap::from([(
        "/v2/old/app/manifests/v1".to_owned(),
        Reply::Ok {
            content_type: "application/vnd.docker.distribution.manifest.v1+prettyjws",
            body: schema1.to_vec(),
        },
    )]))
    .await;
    let err = f
        .puller
        .pull(&reference(addr, "old/app"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullError::Unsupported {
                what: "manifest",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema 1"), "{err}");
}

#[tokio::test]
async fn status_401_is_unauthorized() {
    let f = fixture();
    let addr = serve(HashMap::from([(
        "/v2/private/app/manifests/v1".to_owned(),
        Reply::Status(401),
    )]))
    .await;
    let err = f
        .puller
        .pull(&reference(addr, "private/app"), None)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(!err.is_not_found());
}

#[tokio::test]
async fn missing_blob_is_not_reported_as_missing_image() {
    let f = fixture();
    let (mut routes, config, _) = image_routes("broken/app", good(), good());
    routes.remove(&format!("/v2/broken/app/blobs/{config}"));
    let addr = serve(routes).await;
    let err = f
        .puller
        .pull(&reference(addr, "broken/app"), None)
        .await
        .unwrap_err();
    assert!(!err.is_not_found(), "{err:?}");
    assert!(matches!(err, PullError::Registry { .. }), "{err:?}");
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A pull that must fail with `TooLarge` for `what`, promptly, leaving
/// nothing half-written.
async fn assert_too_large(f: &Fixture, r: &Reference, what: &str) -> PullError {
    let started = std::time::Instant::now();
    let err = f.puller.pull(r, None).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        PullError::TooLarge { what: got, .. } => assert_eq!(*got, what, "{err}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(err.is_too_large());
    assert!(ingest_is_empty(&f.content));
    err
}

#[tokio::test]
async fn manifest_announced_over_the_cap_is_refused_unread() {
    let f = fixture();
    // Announces 5 MiB, sends a little, then waits: only the announcement
    // can end this before the stall timeout.
    let addr = serve(HashMap::from([(
        "/v2/big/app/manifests/v1".to_owned(),
        Reply::Stall {
            length: (MANIFEST_MAX + 1) as usize,
            body: b"{".to_vec(),
        },
    )]))
    .await;
    let err = assert_too_large(&f, &reference(addr, "big/app"), "manifest").await;
    assert_eq!(
        err.to_string(),
        format!(
            "image {addr}/big/app:v1 from http://{addr}/big/app: manifest v1 is {} bytes, \
             over the limit of {MANIFEST_MAX} bytes",
            MANIFEST_MAX + 1
        )
    );
}

#[tokio::test]
async fn manifest_over_the_cap_with_its_length_is_refused() {
    let f = fixture();
    let addr = serve(HashMap::from([(
        "/v2/big/app/manifests/v1".to_owned(),
        Reply::Ok {
            content_type: DOCKER_MANIFEST,
            body: vec![b' '; (MANIFEST_MAX + 1) as usize],
        },
    )]))
    .await;
    assert_too_large(&f, &reference(addr, "big/app"), "manifest").await;
}

#[tokio::test]
async fn chunked_manifest_over_the_cap_is_refused() {
    let f = fixture();
    let addr = serve(HashMap::from([(
        "/v2/big/app/manifests/v1".to_owned(),
        Reply::Chunked {
            content_type: DOCKER_MANIFEST,
            body: vec![b' '; (MANIFEST_MAX + 1) as usize],
        },
    )]))
    .await;
    let err = assert_too_large(&f, &reference(addr, "big/app"), "manifest").await;
    assert!(
        err.to_string().contains(&format!(
            "manifest v1 is over the limit of {MANIFEST_MAX} bytes"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn endless_manifest_is_cut_off_at_the_cap() {
    let f = fixture();
    let addr = serve(HashMap::from([(
        "/v2/big/app/manifests/v1".to_owned(),
        Reply::Endless,
    )]))
    .await;
    assert_too_large(&f, &reference(addr, "big/app"), "manifest").await;
}

#[tokio::test]
async fn chunked_manifest_under_the_cap_is_fine() {
    let f = fixture();
    let (mut routes, config, _) = image_routes("ok/app", good(), good());
    let path = "/v2/ok/app/manifests/v1".to_owned();
    let Reply::Ok { body, .. } = routes[&path].clone() else {
        unreachable!()
    };
    routes.insert(
        path,
        Reply::Chunked {
            content_type: DOCKER_MANIFEST,
            body,
        },
    );
    let addr = serve(routes).await;
    let pulled = f
        .puller
        .pull(&reference(addr, "ok/app"), None)
        .await
        .unwrap();
    assert_eq!(pulled.config_digest, config);
}

#[tokio::test]
async fn index_entry_declaring_a_huge_manifest_is_not_fetched() {
    let f = fixture();
    let platform = super::platform::Platform::host();
    let child = Digest::of(b"never fetched").to_string();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":{},"digest":"{child}",
              "platform":{{"os":"linux","architecture":"{}"{}}}}}]}}"#,
        MANIFEST_MAX + 1,
        platform.architecture,
        platform
            .variant
            .as_ref()
            .map(|v| format!(r#","variant":"{v}""#))
            .unwrap_or_default()
    );
    let addr = serve(HashMap::from([
        (
            "/v2/idx/app/manifests/v1".to_owned(),
            Reply::Ok {
                content_type: OCI_INDEX,
                body: index.into_bytes(),
            },
        ),
        // Would stall the pull if it were asked for.
        (format!("/v2/idx/app/manifests/{child}"), Reply::Hang),
    ]))
    .await;
    let err = assert_too_large(&f, &reference(addr, "idx/app"), "manifest").await;
    assert!(err.to_string().contains(&child), "{err}");
}

#[tokio::test]
async fn config_declared_over_the_cap_is_not_downloaded() {
    let f = fixture();
    let (mut routes, config, layer) = image_routes("fat/app", Reply::Hang, good());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":20,"digest":"{layer}"}}]}}"#,
        CONFIG_MAX + 1
    );
    routes.insert(
        "/v2/fat/app/manifests/v1".to_owned(),
        Reply::Ok {
            content_type: DOCKER_MANIFEST,
            body: manifest.into_bytes(),
        },
    );
    let addr = serve(routes).await;
    let err = assert_too_large(&f, &reference(addr, "fat/app"), "config").await;
    assert!(
        err.to_string().contains(&format!(
            "config {config} is {} bytes, over the limit of {CONFIG_MAX} bytes",
            CONFIG_MAX + 1
        )),
        "{err}"
    );
    assert!(!f.content.has(&layer), "nothing was downloaded");
}

#[tokio::test]
async fn config_naming_a_big_stored_blob_is_not_read_whole() {
    let f = fixture();
    // A blob already in the store (a layer of another image, say) that a
    // manifest names as its config with a small size.
    let big = vec![0u8; (CONFIG_MAX + 1) as usize];
    let big_digest = Digest::of(&big).to_string();
    f.content.ingest_bytes(&big_digest, &big).await.unwrap();
    let (mut routes, _, layer) = image_routes("liar/app", good(), good());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":80,"digest":"{big_digest}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":20,"digest":"{layer}"}}]}}"#
    );
    routes.insert(
        "/v2/liar/app/manifests/v1".to_owned(),
        Reply::Ok {
            content_type: DOCKER_MANIFEST,
            body: manifest.into_bytes(),
        },
    );
    let addr = serve(routes).await;
    assert_too_large(&f, &reference(addr, "liar/app"), "config").await;
}

/// A registry that wants a bearer token from its token endpoint for
/// everything, `/v2/` included, as Docker Hub does.
#[tokio::test]
async fn bearer_token_auth_covers_manifests_and_blobs() {
    let f = fixture();
    let (routes, config, layer) = image_routes("tok/app", good(), good());
    let guard = |reply| Reply::Guarded {
        expected: "Bearer s3cret",
        challenge: r#"Bearer realm="http://{addr}/token",service="test""#,
        reply: Box::new(reply),
    };
    let mut routes: HashMap<String, Reply> =
        routes.into_iter().map(|(k, v)| (k, guard(v))).collect();
    routes.insert(
        "/v2/".to_owned(),
        guard(Reply::Ok {
            content_type: "application/json",
            body: b"{}".to_vec(),
        }),
    );
    routes.insert(
        "/token".to_owned(),
        Reply::Ok {
            content_type: "application/json",
            body: br#"{"token":"s3cret"}"#.to_vec(),
        },
    );
    let addr = serve(routes).await;
    let pulled = f
        .puller
        .pull(&reference(addr, "tok/app"), None)
        .await
        .unwrap();
    assert_eq!(pulled.config_digest, config);
    assert!(f.content.has(&layer));
}

/// A registry that challenges with `Basic`: the password goes out only
/// after the challenge, and works for manifests and blobs.
#[tokio::test]
async fn basic_auth_is_sent_when_challenged() {
    let f = fixture();
    let (routes, config, _) = image_routes("basic/app", good(), good());
    // "alice:hunter2"
    let guard = |reply| Reply::Guarded {
        expected: "Basic YWxpY2U6aHVudGVyMg==",
        challenge: r#"Basic realm="test""#,
        reply: Box::new(reply),
    };
    let mut routes: HashMap<String, Reply> =
        routes.into_iter().map(|(k, v)| (k, guard(v))).collect();
    routes.insert(
        "/v2/".to_owned(),
        guard(Reply::Ok {
            content_type: "application/json",
            body: b"{}".to_vec(),
        }),
    );
    let addr = serve(routes).await;
    let r = reference(addr, "basic/app");
    let err = f.puller.pull(&r, None).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let alice = super::Credential::Basic {
        username: "alice".into(),
        password: "hunter2".into(),
    };
    let pulled = f.puller.pull(&r, Some(alice)).await.unwrap();
    assert_eq!(pulled.config_digest, config);
}

/// An identity token is traded at the realm with a refresh-token grant
/// (a POST), and the bearer token it yields covers manifests and blobs.
#[tokio::test]
async fn identity_token_is_exchanged_for_a_bearer_token() {
    let f = fixture();
    let (routes, config, _) = image_routes("idt/app", good(), good());
    let guard = |reply| Reply::Guarded {
        expected: "Bearer acc3ss",
        challenge: r#"Bearer realm="http://{addr}/token",service="test""#,
        reply: Box::new(reply),
    };
    let mut routes: HashMap<String, Reply> =
        routes.into_iter().map(|(k, v)| (k, guard(v))).collect();
    routes.insert(
        "/v2/".to_owned(),
        guard(Reply::Ok {
            content_type: "application/json",
            body: b"{}".to_vec(),
        }),
    );
    routes.insert(
        "/token".to_owned(),
        Reply::RefreshGrant {
            refresh: "r3fresh",
            token: "acc3ss",
        },
    );
    let addr = serve(routes).await;
    let r = reference(addr, "idt/app");
    let wrong = super::Credential::IdentityToken("stale".into());
    let err = f.puller.pull(&r, Some(wrong)).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let identity = super::Credential::IdentityToken("r3fresh".into());
    let pulled = f.puller.pull(&r, Some(identity)).await.unwrap();
    assert_eq!(pulled.config_digest, config);
}

/// A mirror without `resolve` is never asked what a tag names: the tag is
/// resolved by the registry, and the mirror serves that digest only. The
/// mirror's own answer for the tag (a different image) is never used.
#[tokio::test]
async fn pull_only_mirror_is_not_asked_for_tags() {
    let (mirror_routes, config, layer) = image_routes("cap/app", good(), good());
    let tagged = mirror_routes["/v2/cap/app/manifests/v1"].clone();
    let Reply::Ok { body, .. } = &tagged else {
        unreachable!("image_routes serves the manifest as is")
    };
    let digest = Digest::of(body).to_string();
    let mut mirror_routes = mirror_routes;
    mirror_routes.insert(format!("/v2/cap/app/manifests/{digest}"), tagged.clone());
    // What the mirror would claim the tag is: another image entirely.
    let (evil, _, _) = image_routes("cap/app", good(), good());
    let mut evil_manifest = evil["/v2/cap/app/manifests/v1"].clone();
    if let Reply::Ok { body, .. } = &mut evil_manifest {
        *body = String::from_utf8(body.clone())
            .unwrap()
            .replace("\"size\":20", "\"size\":21")
            .into_bytes();
    }
    mirror_routes.insert("/v2/cap/app/manifests/v1".to_owned(), evil_manifest);
    let mirror = serve(mirror_routes).await;
    // The registry only answers the tag; its blobs are missing.
    let upstream = serve(HashMap::from([(
        "/v2/cap/app/manifests/v1".to_owned(),
        tagged,
    )]))
    .await;

    let dir = tempfile::tempdir().unwrap();
    let content = Arc::new(ContentStore::new(dir.path()).unwrap());
    let mut settings = RegistrySettings {
        stall_timeout: STALL,
        ..RegistrySettings::default()
    };
    let only_pull = super::settings::Capabilities {
        pull: true,
        resolve: false,
    };
    settings.mirrors.insert(
        upstream.to_string(),
        vec![super::settings::MirrorSpec {
            location: mirror.to_string(),
            capabilities: only_pull,
        }],
    );
    let puller = Puller::new(settings, content.clone());
    let pulled = puller
        .pull(&reference(upstream, "cap/app"), None)
        .await
        .unwrap();
    assert_eq!(pulled.repo_digest, digest);
    assert_eq!(pulled.config_digest, config);
    assert!(content.has(&layer));
}

/// Routes of an image behind bearer authentication whose realm is
/// `/token`, answered by `token`.
fn token_guarded_image(repo: &str, token: Reply) -> HashMap<String, Reply> {
    let (routes, _, _) = image_routes(repo, good(), good());
    let guard = |reply| Reply::Guarded {
        expected: "Bearer acc3ss",
        challenge: r#"Bearer realm="http://{addr}/token",service="test""#,
        reply: Box::new(reply),
    };
    let mut routes: HashMap<String, Reply> =
        routes.into_iter().map(|(k, v)| (k, guard(v))).collect();
    routes.insert(
        "/v2/".to_owned(),
        guard(Reply::Ok {
            content_type: "application/json",
            body: b"{}".to_vec(),
        }),
    );
    routes.insert("/token".to_owned(), token);
    routes
}

/// A realm that redirects is not followed, so a 307 cannot carry the
/// refresh token on to another URL (here one that would grant it).
#[tokio::test]
async fn token_request_follows_no_redirect() {
    let f = fixture();
    let mut routes = token_guarded_image(
        "redir/app",
        Reply::Redirect {
            status: 307,
            location: "http://{addr}/elsewhere".to_owned(),
        },
    );
    routes.insert(
        "/elsewhere".to_owned(),
        Reply::RefreshGrant {
            refresh: "r3fresh",
            token: "acc3ss",
        },
    );
    let addr = serve(routes).await;
    let identity = super::Credential::IdentityToken("r3fresh".into());
    let err = f
        .puller
        .pull(&reference(addr, "redir/app"), Some(identity))
        .await
        .unwrap_err();
    let text = super::error::with_causes(&err);
    assert!(
        text.contains("307") && text.contains("no redirect"),
        "{text}"
    );
    assert!(!text.contains("r3fresh"), "{text}");
}

/// What a token endpoint says when it fails is not passed on: it may be
/// whatever the realm's URL reached.
#[tokio::test]
async fn token_endpoint_error_body_is_not_echoed() {
    let f = fixture();
    let routes = token_guarded_image(
        "echo/app",
        Reply::Error {
            status: 500,
            body: b"AccessKeyId=AKIA-INSTANCE-ROLE".to_vec(),
        },
    );
    let addr = serve(routes).await;
    let err = f
        .puller
        .pull(&reference(addr, "echo/app"), None)
        .await
        .unwrap_err();
    let text = super::error::with_causes(&err);
    assert!(text.contains("500"), "{text}");
    assert!(!text.contains("AKIA"), "{text}");
}

/// The token endpoint's answers in turn, and how many were asked for.
fn tokens(answers: &[&str]) -> (Reply, Arc<std::sync::atomic::AtomicUsize>) {
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let replies = answers
        .iter()
        .map(|token| Reply::Ok {
            content_type: "application/json",
            body: format!(r#"{{"token":"{token}"}}"#).into_bytes(),
        })
        .collect();
    let reply = Reply::Sequence {
        served: served.clone(),
        replies,
    };
    (reply, served)
}

/// A token that stops working mid-pull (here: the first one is refused
/// by the manifest) is renewed with the registry's challenge, once, and
/// the pull goes on with the new one.
#[tokio::test]
async fn expired_token_is_renewed_once() {
    let f = fixture();
    let (token, served) = tokens(&["expired", "acc3ss"]);
    let routes = token_guarded_image("renew/app", token);
    let addr = serve(routes).await;
    f.puller
        .pull(&reference(addr, "renew/app"), None)
        .await
        .unwrap();
    // The login and one renewal; the blobs went with the new token.
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A registry that refuses every token gets one renewal per request, and
/// the pull fails as unauthorized instead of looping.
#[tokio::test]
async fn a_token_refused_again_fails_the_pull() {
    let f = fixture();
    let (token, served) = tokens(&["never-good"]);
    let routes = token_guarded_image("refuse/app", token);
    let addr = serve(routes).await;
    let err = f
        .puller
        .pull(&reference(addr, "refuse/app"), None)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    // The login and one renewal for the one request that was refused.
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
}
