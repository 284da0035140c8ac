//! The PostgreSQL store as an operator meets it: readiness follows the
//! database, and a broker runs only on the schema it knows. (The whole
//! suite runs on PostgreSQL too, with JITGATE_TEST_STORE=postgres.)

use std::time::Duration;

use jitgate_broker::store::postgres::scratch::{connect_to, connect_to_server};
use jitgate_tests::bin;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use reqwest::StatusCode;

fn database_name(b: &TestBroker) -> String {
    let url = b.database_url().unwrap();
    url.split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap()
        .to_owned()
}

async fn readiness(b: &TestBroker, http: &reqwest::Client) -> (StatusCode, String) {
    let resp = http.get(format!("{}/readyz", b.url)).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Polls readiness until it is `want` (each poll is one request; the
/// broker's own timeouts bound it).
async fn until_readiness(b: &TestBroker, http: &reqwest::Client, want: StatusCode) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readiness(b, http).await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness stayed {status} ({body}), waiting for {want}:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_says_whether_the_database_is_reachable() {
    let b = TestBroker::start_on_postgres(CATALOG, &policies(), &[]).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    assert_eq!(readiness(&b, &http).await.0, StatusCode::OK);

    // The database refuses connections, and the broker's are cut.
    let admin = connect_to_server().await.unwrap();
    let name = database_name(&b);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    let body = until_readiness(&b, &http, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body.contains("store unavailable"), "{body}");

    // Back: the broker reconnects by itself and serves again.
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    until_readiness(&b, &http, StatusCode::OK).await;
    crate::support::request(&b.client("alice"), "auto-admin", 60).await;
}

fn serve_once(b: &TestBroker, config: &std::path::Path) -> std::process::Output {
    // Exits at once when the store is refused; otherwise it would serve, so
    // it is only run where a refusal is expected.
    std::process::Command::new(bin("jitgate-broker"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--hub-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .arg("--data-dir")
        .arg(b.data_dir())
        .arg("--policy-dir")
        .arg(b.path("policies"))
        .env("JITGATE_STORE", "postgres")
        .env("JITGATE_DATABASE_URL", b.database_url().unwrap())
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_broker_runs_only_on_the_schema_it_knows() {
    let mut b = TestBroker::start_on_postgres(CATALOG, &policies(), &[]).await;
    b.stop().await;
    let config = b.path("no-migrate.toml");
    std::fs::write(&config, "[database]\nmigrate_at_start = false\n").unwrap();
    let migrate = |check: bool| {
        let mut args = vec!["migrate"];
        if check {
            args.push("--check");
        }
        b.offline(&args)
    };
    let latest = jitgate_broker::store::postgres::schema::latest();
    let current = migrate(true);
    assert!(current.status.success(), "{current:?}");
    let said = String::from_utf8_lossy(&current.stdout);
    assert!(said.contains(&format!("schema at version {latest}")), "{said}");

    // A newer broker migrated the database: this one refuses it, whether
    // asked to migrate or to serve.
    let admin = connect_to_server().await.unwrap();
    let name = database_name(&b);
    let url = b.database_url().unwrap().to_owned();
    let db = connect_to(&url).await.unwrap();
    db.batch_execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES (99, 'from_the_future', now()::text, '0')",
    )
    .await
    .unwrap();
    for out in [migrate(false), migrate(true), serve_once(&b, &config)] {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "schema is at version 99, newer than this broker knows ({latest})"
            )),
            "{err}"
        );
    }

    // An empty database and migrate_at_start = false: refused until
    // `jitgate-broker migrate` ran.
    drop(db);
    for statement in [
        format!("DROP DATABASE {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let out = serve_once(&b, &config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "schema is at version 0, this broker needs {latest}: run `jitgate-broker migrate`"
        )),
        "{err}"
    );
    assert!(!migrate(true).status.success());
    let applied = migrate(false);
    assert!(applied.status.success(), "{applied:?}");
    assert!(migrate(true).status.success());
}
