//! Throwaway databases for tests and benchmarks: each user gets a database
//! of its own on a server where it may create them, dropped when it is
//! done. The server is `JITGATE_TEST_DATABASE_URL`, else the one on
//! 127.0.0.1:5432 (`scripts/test` makes sure there is one).

use std::time::Duration;

use super::{pg_error, PgSettings};
use crate::store::StoreError;

/// Names the server to create scratch databases on.
pub const URL_ENV: &str = "JITGATE_TEST_DATABASE_URL";
const LOCAL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database of its own, dropped (with any connections still open to
/// it) when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: tokio_postgres::Config,
    name: String,
    /// The server: a host name, an address or a socket directory.
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

/// `value` as a libpq key=value string quotes it.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl ScratchDatabase {
    /// Creates an empty database with a fresh name.
    pub async fn create() -> Result<Self, StoreError> {
        let admin_url = std::env::var(URL_ENV).unwrap_or_else(|_| LOCAL.to_owned());
        let admin: tokio_postgres::Config = admin_url.parse().map_err(|e| StoreError::Open {
            path: URL_ENV.to_owned(),
            reason: format!("not a database URL: {e}"),
            source: std::sync::Arc::new(e),
        })?;
        let name = format!("jitgate_scratch_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&admin).await.map_err(|e| StoreError::Open {
            path: super::describe(&admin_url),
            reason: format!("cannot reach the test database server (set {URL_ENV}): {e}"),
            source: std::sync::Arc::new(e),
        })?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(pg_error)?;
        let host = match admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = admin.get_ports().first().copied().unwrap_or(5432);
        Ok(Self {
            user: admin.get_user().map(str::to_owned),
            password: admin
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            admin,
            name,
            host,
            port,
        })
    }

    /// The database's connection string (libpq key=value form).
    pub fn url(&self) -> String {
        self.url_at(&self.host, self.port)
    }

    /// The connection string for reaching the database at another address
    /// (through a proxy).
    pub fn url_at(&self, host: &str, port: u16) -> String {
        let mut url = vec![
            format!("dbname={}", self.name),
            format!("host={} port={port}", quoted(host)),
        ];
        if let Some(user) = &self.user {
            url.push(format!("user={}", quoted(user)));
        }
        if let Some(password) = &self.password {
            url.push(format!("password={}", quoted(password)));
        }
        url.join(" ")
    }

    /// Where the server listens: a host (or socket directory) and port.
    pub fn server(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// Settings for a store on this database.
    pub fn settings(&self) -> PgSettings {
        PgSettings {
            url: self.url(),
            password: None,
            pool_size: 8,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A plain connection (no TLS) to the server scratch databases are made
/// on, as their owner.
pub async fn connect_to_server() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_to(&std::env::var(URL_ENV).unwrap_or_else(|_| LOCAL.to_owned())).await
}

/// A plain connection (no TLS) to the database `url` names, as tests and
/// benchmarks reach into it: to read, tamper or measure floors.
pub async fn connect_to(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect(&url.parse()?).await
}

async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "scratch database admin connection ended");
        }
    });
    Ok(client)
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime: the drop gets a thread and a
        // runtime of its own, and is waited for.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = connect(&admin).await.map_err(std::io::Error::other)?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(database = %self.name, error = %e, "scratch database not dropped"),
            Err(_) => {
                tracing::warn!(database = %self.name, "scratch database not dropped: the dropping thread panicked")
            }
        }
    }
}
