//! `jitgate-broker`: run the broker and administer its data directory.
#![allow(clippy::print_stdout)] // a command-line tool: stdout is its output

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use jitgate_broker::audit::verify::verify_stored;
use jitgate_broker::audit::{Actor, AuditRecord, ChainVerifier};
use jitgate_broker::config::{BrokerConfig, LogFormat, Overrides, StoreKind, StoreOverrides};
use jitgate_broker::domain::policy::{Catalog, SCHEMA};
use jitgate_broker::quickstart::{self, offline_broker, QuickstartSettings};
use jitgate_broker::server::{open_store, Server};
use jitgate_broker::service::admin::UserOutcome;
use jitgate_broker::service::{catalog_of, PolicyHolder};
use jitgate_broker::store::postgres::{describe, schema};
use jitgate_broker::store::{backup, Store};
use jitgate_shared::clock::Clock;
use jitgate_shared::v1::api::{Role, UserBody};
use jitgate_shared::v1::UserId;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate-broker",
    version,
    about = "jitgate broker: just-in-time privileged access"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Configuration file (see deploy/broker.example.toml).
        #[arg(long, env = "JITGATE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Box<Overrides>,
    },
    /// Exit 0 when the broker on this host is ready (its `/readyz`, over
    /// its own address and CA): the container image's health check. Takes
    /// the same configuration as `serve`.
    Ready {
        #[arg(long, env = "JITGATE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Box<Overrides>,
    },
    /// Run a broker on embedded defaults with a sandboxed example catalogue
    /// and demo users, printing their tokens.
    Quickstart {
        #[arg(long, default_value = ".jitgate/quickstart")]
        data_dir: PathBuf,
        #[arg(long, default_value = "policies")]
        policy_dir: PathBuf,
        #[arg(long, default_value = "deploy/quickstart/catalog.toml")]
        catalog: PathBuf,
        /// Address of the REST API and console (port 0: any free port; the
        /// greeting says which).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Address of the agent hub (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8444")]
        hub_listen: std::net::SocketAddr,
    },
    /// Apply the PostgreSQL store's schema migrations (store = "postgres").
    Migrate {
        /// Only say where the schema is; exit 1 when it is not current.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The store itself.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Create the data directory's CA and keys if they are not there, and
    /// print the CA's fingerprint: for brokers that share keys (several on
    /// PostgreSQL, made into one Kubernetes Secret), made once.
    Keys {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Back up the embedded store and the data directory's keys to a new
    /// file: from the running broker through its control socket (a
    /// consistent snapshot; writes wait while it is read), or from the
    /// data directory when no broker runs on it. The file holds the
    /// broker's secret keys and is readable by its owner only.
    Backup {
        /// Where to write the backup (must not exist).
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restore a backup into a new data directory (no store and no keys
    /// there yet; no broker running), then check it: every entry the
    /// backup holds and an audit chain that verifies.
    Restore {
        /// The backup file `backup` wrote.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Local accounts (the broker must not be running on this data directory).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Load configurations, resources and users from a catalogue file (like
    /// deploy/quickstart/catalog.toml); the broker must not be running on
    /// this data directory. Prints a fresh API token for each user.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log (the broker must not be running on this data directory).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// The store an administrative command opens: as `serve` would, from the
/// configuration file, the environment and these flags.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Configuration file (see deploy/broker.example.toml); its store
    /// settings are used.
    #[arg(long, env = "JITGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: StoreOverrides,
}

impl StoreArgs {
    fn config(&self) -> anyhow::Result<BrokerConfig> {
        let overrides = Overrides {
            store: self.overrides.clone(),
            ..Overrides::default()
        };
        Ok(BrokerConfig::load(self.config.as_deref(), &overrides)?)
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(open_store(&self.config()?).await?)
    }
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy everything one store holds into another, empty one (embedded
    /// to PostgreSQL to grow, or back), then check the copy: the same
    /// entries, and an audit chain that verifies. No broker may be running
    /// on either.
    Copy {
        /// `sled:DATA_DIR` (the embedded store in a data directory) or
        /// `postgres:URL`.
        #[arg(long, value_parser = parse_location)]
        from: Location,
        /// As --from; migrated first when PostgreSQL.
        #[arg(long, value_parser = parse_location)]
        to: Location,
    },
}

/// A store, named on the command line.
#[derive(Debug, Clone)]
enum Location {
    Sled(PathBuf),
    Postgres(String),
}

fn parse_location(s: &str) -> Result<Location, String> {
    match s.split_once(':') {
        Some(("sled", dir)) if !dir.is_empty() => Ok(Location::Sled(dir.into())),
        Some(("postgres", url)) if !url.is_empty() => {
            jitgate_broker::store::postgres::check_url(url).map(|()| Location::Postgres(url.to_owned()))
        }
        _ => Err(format!("`{s}`: sled:DATA_DIR or postgres:URL")),
    }
}

impl Location {
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Location::Sled(dir) => Arc::new(jitgate_broker::server::open_sled(dir)?),
            Location::Postgres(url) => {
                let settings = jitgate_broker::store::postgres::PgSettings {
                    url: url.clone(),
                    ..jitgate_broker::config::DatabaseConfig::default().settings()?
                };
                Arc::new(jitgate_broker::store::postgres::PgStore::open(&settings, true).await?)
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Location::Sled(dir) => format!("sled:{}", dir.display()),
            Location::Postgres(url) => format!("postgres:{}", describe(url)),
        }
    }
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a local account and print its first API token.
    Add {
        id: UserId,
        /// requester, approver, admin or auditor; repeat for several.
        #[arg(long = "role", value_parser = parse_role, required = true)]
        roles: Vec<Role>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Directory group for policies; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Person id linking accounts of one person (no approving each other).
        #[arg(long)]
        person: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a new API token for an existing user.
    Token {
        id: UserId,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a one-time link that signs a local account (one with no
    /// identity provider) in to the web console: valid 15 minutes, once.
    Link {
        id: UserId,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Create or update everything in FILE.
    Load {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory as the broker would at load.
    Check {
        dir: PathBuf,
        /// Check resource, group and configuration names against the
        /// catalogue in this data directory's embedded store (the broker
        /// must not be running on it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Check names against the catalogue in the store this
        /// configuration file names (embedded or PostgreSQL).
        #[arg(long, conflicts_with_all = ["data_dir", "catalog"])]
        config: Option<PathBuf>,
        /// Check names against a catalogue file instead (like the quickstart's).
        #[arg(long, conflicts_with = "data_dir")]
        catalog: Option<PathBuf>,
    },
    /// Print the Cedar schema policies are validated against.
    Schema,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names the first broken record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Verify an export (JSON lines from `audit export`) instead of the store.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Write every record as JSON lines.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// File to write; standard output when absent.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("unknown role `{s}`; one of: requester, approver, admin, auditor"))
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, overrides } => {
            let config = BrokerConfig::load(config.as_deref(), &overrides)?;
            init_tracing(config.log_format);
            let store = open_store(&config).await?;
            let server = Server::start(&config, store).await?;
            server.run_until_signalled().await?;
        }
        Command::Ready { config, overrides } => {
            let config = BrokerConfig::load(config.as_deref(), &overrides)?;
            ready(&config).await?;
        }
        Command::Quickstart {
            data_dir,
            policy_dir,
            catalog,
            listen,
            hub_listen,
        } => {
            init_tracing(LogFormat::Text);
            let bin_dir = std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default();
            quickstart::run(QuickstartSettings {
                data_dir,
                policy_dir,
                catalog,
                listen,
                hub_listen,
                bin_dir,
            })
            .await?
        }
        Command::User { command } => user(command).await?,
        Command::Catalog {
            command: CatalogCommand::Load { file, store },
        } => {
            let seed = quickstart::read_seed(&file)?;
            let store = store.open().await?;
            let tokens = seed.apply(&offline_broker(store)).await?;
            eprintln!(
                "loaded {} configurations, {} resources, {} users",
                seed.configurations.len(),
                seed.resources.len(),
                seed.users.len()
            );
            for t in tokens {
                println!("{}\t{}", t.user.id, t.token);
            }
        }
        Command::Migrate { check, store } => migrate(check, &store).await?,
        Command::Backup { output, store } => backup(&output, &store).await?,
        Command::Keys { store } => {
            let dir = store.config()?.data_dir;
            jitgate_broker::server::create_private_dir(&dir)?;
            let now = jitgate_shared::clock::SystemClock.now();
            let ca = jitgate_broker::tls::BrokerCa::load_or_create(&dir, now)?;
            jitgate_broker::tls::load_or_create_command_key(&dir)?;
            jitgate_broker::tls::load_or_create_audit_key(&dir)?;
            eprintln!(
                "{}: ca.pem, ca.key, command.key, audit.key; the CA's fingerprint (agents pin it):",
                dir.display()
            );
            println!("{}", ca.fingerprint());
        }
        Command::Restore { input, store } => restore(&input, &store).await?,
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => copy(&from, &to).await?,
        Command::Policy { command } => policy(command).await?,
        Command::Audit { command } => audit(command).await?,
    }
    Ok(())
}

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            id,
            roles,
            email,
            display_name,
            groups,
            person,
            store,
        } => {
            let store = store.open().await?;
            let broker = offline_broker(store);
            let body = UserBody {
                id: id.clone(),
                display_name: display_name.unwrap_or_default(),
                email,
                roles: roles.into_iter().collect(),
                groups: groups.into_iter().collect(),
                person,
            };
            match broker.save_user(Actor::System, body).await? {
                UserOutcome::Created(issued) => {
                    eprintln!("created {id}; token expires {}", issued.expires_at);
                    println!("{}", issued.token);
                }
                UserOutcome::Updated(_) => {
                    bail!("user `{id}` already exists; use `jitgate-broker user token {id}` for a new token")
                }
            }
        }
        UserCommand::Token { id, store } => {
            let store = store.open().await?;
            let issued = offline_broker(store).issue_token_as(Actor::System, &id).await?;
            eprintln!("token for {id} expires {}", issued.expires_at);
            println!("{}", issued.token);
        }
        UserCommand::Link { id, store } => {
            let config = store.config()?;
            let broker = offline_broker(open_store(&config).await?)
                .with_public_url(config.public_url_for(config.listen));
            let issued = broker.issue_sign_in_link_as(Actor::System, &id).await?;
            eprintln!(
                "sign-in link for {id}: open it in a browser before {} (it works once)",
                issued.expires_at
            );
            println!("{}", issued.url);
        }
    }
    Ok(())
}

async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Schema => print!("{SCHEMA}"),
        PolicyCommand::Check {
            dir,
            data_dir,
            config,
            catalog,
        } => {
            let catalog = match (data_dir, config, catalog) {
                (Some(d), _, _) => catalog_of(&jitgate_broker::server::open_sled(&d)?).await?,
                (None, Some(file), _) => {
                    let config = BrokerConfig::load(Some(&file), &Overrides::default())?;
                    catalog_of(open_store(&config).await?.as_ref()).await?
                }
                (None, None, Some(file)) => quickstart::read_seed(&file)?.catalog(),
                (None, None, None) => {
                    eprintln!("note: resource, group and configuration names not checked; pass --data-dir or --catalog");
                    Catalog::default()
                }
            };
            match PolicyHolder::load(&dir, &catalog) {
                Ok(p) => println!(
                    "{}: {} policies in {} files: ok",
                    dir.display(),
                    p.policy_count(),
                    p.files().len()
                ),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    if let AuditCommand::Verify {
        input: Some(file), ..
    } = &command
    {
        return verify_export(file);
    }
    let config = match &command {
        AuditCommand::Verify { store, .. } | AuditCommand::Export { store, .. } => store.config()?,
    };
    let data_dir = config.data_dir.clone();
    let store = open_store(&config).await?;
    match command {
        AuditCommand::Verify { .. } => {
            let key = match store.audit_anchor().await? {
                Some(_) => Some(
                    jitgate_broker::tls::load_audit_key(&data_dir)
                        .with_context(|| "reading the audit key, to check the signed anchor")?
                        .verifier(),
                ),
                None => None,
            };
            let report = verify_stored(store.as_ref(), key.as_ref(), |_| {}).await?;
            if let Some(e) = &report.broken {
                eprintln!("audit chain BROKEN after {} intact records: {e}", report.records);
                std::process::exit(1);
            }
            match &report.anchor {
                Some(anchor) => println!(
                    "audit chain intact: {} records; signed head at record {} ({}) verified",
                    report.records, anchor.seq, anchor.at
                ),
                None => println!(
                    "audit chain intact: {} records (not signed yet: the broker signs its head every audit_anchor_interval and at shutdown)",
                    report.records
                ),
            }
        }
        AuditCommand::Export { output, .. } => {
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut n = 0u64;
            each_audit_record(store.as_ref(), |record| {
                serde_json::to_writer(&mut out, record)?;
                out.write_all(b"\n")?;
                n += 1;
                Ok(())
            })
            .await?;
            out.flush()?;
            eprintln!("exported {n} audit records");
        }
    }
    Ok(())
}

async fn copy(from: &Location, to: &Location) -> anyhow::Result<()> {
    let (source, destination) = (from.open().await?, to.open().await?);
    let estimate = source.entry_count().await?;
    let bar = indicatif::ProgressBar::new(estimate);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} entries, {per_sec}, {eta} left",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(format!("copying {} to {}", from.describe(), to.describe()));
    let copied = jitgate_broker::store::dump::copy(source.as_ref(), destination.as_ref(), |n| {
        bar.set_position(n.min(estimate));
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "copied {} entries ({} audit records) from {} to {}; the copy holds the same entries and its audit chain verifies",
        copied.entries,
        copied.audit_records,
        from.describe(),
        to.describe()
    );
    Ok(())
}

/// Asks the broker serving `config` on this host whether it is ready:
/// through the loopback address when it listens on every address, naming
/// itself as its first server name, trusting only its CA.
async fn ready(config: &BrokerConfig) -> anyhow::Result<()> {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5));
    let url = if config.insecure_plain_http {
        format!("http://{addr}/readyz")
    } else {
        let name = config
            .server_names
            .first()
            .context("no server name to reach the broker by")?;
        let ca_path = config.data_dir.join(jitgate_broker::tls::CA_CERT_FILE);
        let ca = reqwest::Certificate::from_pem(
            &std::fs::read(&ca_path).with_context(|| ca_path.display().to_string())?,
        )?;
        client = client.tls_certs_only([ca]).resolve(name, addr);
        format!("https://{name}:{}/readyz", addr.port())
    };
    let answer = client
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| url.clone())?;
    if !answer.status().is_success() {
        bail!(
            "{url}: {} {}",
            answer.status(),
            answer.text().await.unwrap_or_default().trim()
        );
    }
    println!("ready");
    Ok(())
}

/// The data directory of an embedded store, or why backups are not ours
/// to take.
fn embedded_data_dir(args: &StoreArgs) -> anyhow::Result<PathBuf> {
    let config = args.config()?;
    if config.store != StoreKind::Sled {
        bail!(
            "store = \"postgres\": back up the database with pg_dump (consistent while brokers run) and copy the data directory's key files; see docs/operating.md"
        );
    }
    Ok(config.data_dir)
}

async fn backup(output: &Path, args: &StoreArgs) -> anyhow::Result<()> {
    let data_dir = embedded_data_dir(args)?;
    if output.exists() {
        bail!("{} exists: a backup is written to a new file", output.display());
    }
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let from = match jitgate_broker::control::ask_backup(&data_dir, &partial).await {
        Ok(_) => "the running broker",
        Err(jitgate_broker::control::AskError::NotRunning(_)) => {
            let store = jitgate_broker::server::open_sled(&data_dir)?;
            let file = jitgate_broker::control::private_file(&partial)
                .with_context(|| partial.display().to_string())?;
            let mut out = std::io::BufWriter::new(file);
            let now = jitgate_shared::clock::SystemClock.now();
            backup::take(&store, &data_dir, now, &mut out)?;
            out.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .with_context(|| partial.display().to_string())?;
            "the data directory (no broker running)"
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e).context(format!("backing up {}", data_dir.display()));
        }
    };
    // What landed on disk is read back whole before it is called a backup.
    let checked = std::fs::File::open(&partial)
        .map_err(anyhow::Error::from)
        .and_then(|f| Ok(backup::check(&mut std::io::BufReader::new(f))?));
    let summary = match checked {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e).context("the backup written does not read back");
        }
    };
    std::fs::rename(&partial, output).with_context(|| output.display().to_string())?;
    println!(
        "backed up {} entries ({} audit records) and {} key files of {} from {from}, as of {}, to {} (keep it like the data directory: it holds the broker's keys)",
        summary.entries,
        summary.audit_records,
        summary.key_files,
        data_dir.display(),
        summary.taken_at,
        output.display()
    );
    Ok(())
}

async fn restore(input: &Path, args: &StoreArgs) -> anyhow::Result<()> {
    let data_dir = embedded_data_dir(args)?;
    let file = std::fs::File::open(input).with_context(|| input.display().to_string())?;
    jitgate_broker::server::create_private_dir(&data_dir)?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("restoring {}", input.display()));
    let summary = backup::restore(&mut std::io::BufReader::new(file), &data_dir, |n| {
        bar.set_message(format!("restoring {}: {n} entries", input.display()));
    })
    .await
    .with_context(|| format!("restoring {} into {}", input.display(), data_dir.display()))?;
    bar.finish_and_clear();
    println!(
        "restored {} entries ({} audit records) and {} key files, as of {}, into {}; the audit chain verifies. Start the broker on it.",
        summary.entries,
        summary.audit_records,
        summary.key_files,
        summary.taken_at,
        data_dir.display()
    );
    Ok(())
}

async fn migrate(check: bool, args: &StoreArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if config.store != StoreKind::Postgres {
        bail!("migrations are for store = \"postgres\"; the embedded store needs none");
    }
    let settings = config.database.settings()?;
    let database = describe(&settings.url);
    // Opening checks the schema; a newer one is refused there.
    let store = match jitgate_broker::store::postgres::PgStore::open(&settings, !check).await {
        Ok(store) => store,
        Err(e @ jitgate_broker::store::StoreError::Schema(_)) if check => {
            eprintln!("{database}: {e}");
            std::process::exit(1);
        }
        Err(e) => return Err(e.into()),
    };
    let version = schema::version(store.pool()).await?;
    println!(
        "{database}: schema at version {version} (this broker's: {})",
        schema::latest()
    );
    Ok(())
}

/// Calls `each` for every audit record in the store, in order, a page at a
/// time.
async fn each_audit_record(
    store: &dyn Store,
    mut each: impl FnMut(&AuditRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    const PAGE: usize = 10_000;
    let mut from = 1;
    loop {
        let page = store.audit(from, PAGE).await?;
        for record in &page {
            each(record)?;
        }
        match page.last() {
            Some(last) => from = last.seq + 1,
            None => return Ok(()),
        }
    }
}

/// Checks the next record; a break ends the process naming the record.
fn check_or_exit(verifier: &mut ChainVerifier, record: &AuditRecord) {
    if let Err(e) = verifier.check(record) {
        eprintln!(
            "audit chain BROKEN after {} intact records: {e}",
            verifier.verified()
        );
        std::process::exit(1);
    }
}

/// Verifies an exported audit log, line by line.
fn verify_export(file: &Path) -> anyhow::Result<()> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut verifier = ChainVerifier::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: AuditRecord = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{} line {}: not an audit record: {e}", file.display(), n + 1);
                std::process::exit(1);
            }
        };
        check_or_exit(&mut verifier, &record);
    }
    println!("audit chain intact: {} records", verifier.verified());
    Ok(())
}
