//! The container images, checked where no container engine runs. Each
//! Containerfile's runtime stage was built in a Debian chroot by
//! `scripts/image-rootfs` (its base release by debootstrap, then its RUN
//! steps; `scripts/test-tools` runs it). Here the image's programs go where
//! its COPY lines say and run as its USER, ENV, VOLUME, ENTRYPOINT, CMD and
//! HEALTHCHECK say, in a mount namespace where the image's root is
//! read-only and only the volume is writable: the broker's image serves,
//! answers its health check and takes an agent on its hub, and the agent's
//! image enrolls and applies an approved grant to its sandbox tenant. The
//! programs are this build's (the images build them `--release`, with the
//! same packages and features).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::CreateJoinTokenBody;
use jitgate_shared::v1::ConfigId;
use jitgate_tests::broker::on_postgres;
use jitgate_tests::port::free_port;
use jitgate_tests::{bin, workspace};
use tokio::process::{Child, Command};

use crate::support::{eventually, request, said};

/// What a Containerfile's runtime stage (after its last FROM) says about
/// running the image.
#[derive(Debug, Default)]
struct Stage {
    /// Sources (build-stage paths or paths of the repository) and where
    /// they go.
    copies: Vec<(Vec<String>, String)>,
    user: String,
    env: Vec<(String, String)>,
    expose: Vec<u16>,
    volumes: Vec<String>,
    healthcheck: Option<Vec<String>>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn json_words(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("`{s}` is not an exec-form JSON array: {e}"))
}

fn stage(containerfile: &Path) -> Stage {
    let text = std::fs::read_to_string(containerfile).unwrap();
    let mut joined = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(continued) => joined.push_str(continued),
            None => {
                joined.push_str(line);
                joined.push('\n');
            }
        }
    }
    let runtime = joined.rsplit("\nFROM ").next().unwrap();
    let mut stage = Stage::default();
    for line in runtime.lines().skip(1) {
        let Some((instruction, rest)) = line.trim().split_once(' ') else {
            continue;
        };
        let rest = rest.trim();
        match instruction {
            "COPY" => {
                let mut words: Vec<String> = rest
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .map(str::to_owned)
                    .collect();
                let dest = words.pop().unwrap();
                stage.copies.push((words, dest));
            }
            "USER" => stage.user = rest.to_owned(),
            "ENV" => stage.env.extend(rest.split_whitespace().map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })),
            "EXPOSE" => stage
                .expose
                .extend(rest.split_whitespace().map(|p| p.parse::<u16>().unwrap())),
            "VOLUME" => stage.volumes.extend(json_words(rest)),
            "HEALTHCHECK" => {
                let command = rest.split_once("CMD ").unwrap().1;
                stage.healthcheck = Some(json_words(command));
            }
            "ENTRYPOINT" => stage.entrypoint = json_words(rest),
            "CMD" => stage.cmd = json_words(rest),
            _ => {}
        }
    }
    stage
}

/// An image's runtime stage, ready to run programs in.
struct Container {
    rootfs: PathBuf,
    stage: Stage,
    /// The host directory mounted at the image's volume.
    volume: tempfile::TempDir,
    /// Where the root is mounted in each program's namespace.
    mountpoint: tempfile::TempDir,
    /// Host paths mounted over paths of the image: the stage's COPY lines,
    /// and what a test adds.
    mounts: Vec<(PathBuf, String)>,
    env: Vec<(String, String)>,
}

impl Container {
    fn new(image: &str) -> Self {
        let rootfs = workspace().join("target/test-tools/images").join(image);
        assert!(
            rootfs.join(".containerfile.sha256").exists(),
            "{} is missing: run scripts/test-tools",
            rootfs.display()
        );
        let containerfile = workspace().join(format!("deploy/container/{image}.Containerfile"));
        let stage = stage(&containerfile);
        let mut c = Self {
            rootfs,
            volume: tempfile::tempdir().unwrap(),
            mountpoint: tempfile::tempdir().unwrap(),
            mounts: Vec::new(),
            env: stage.env.clone(),
            stage,
        };
        for (sources, dest) in c.stage.copies.clone() {
            for source in sources {
                let (host, name) = match source.strip_prefix("/src/target/release/") {
                    Some(program) => (bin(program), program.to_owned()),
                    None => (workspace().join(&source), String::new()),
                };
                let inside = if dest.ends_with('/') && !name.is_empty() {
                    format!("{dest}{name}")
                } else {
                    dest.trim_end_matches('/').to_owned()
                };
                c.mount(host, &inside);
            }
        }
        let (uid, gid) = c.stage.user.split_once(':').unwrap();
        let volume = c.volume.path().to_owned();
        std::os::unix::fs::chown(&volume, Some(uid.parse().unwrap()), Some(gid.parse().unwrap())).unwrap();
        std::fs::set_permissions(&volume, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        c
    }

    /// Mounts `host` at `inside`, making the mount point in the image's
    /// root if it has none.
    fn mount(&mut self, host: PathBuf, inside: &str) {
        let target = self.rootfs.join(inside.trim_start_matches('/'));
        if !target.exists() {
            if host.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
            } else {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, b"").unwrap();
            }
        }
        self.mounts.push((host, inside.to_owned()));
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    fn env(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    /// `args` run in the image as its USER, with its ENV only, its root
    /// read-only and its volume writable.
    fn command(&self, args: &[String]) -> Command {
        let root = self.mountpoint.path().display().to_string();
        let mut script = format!("mount --bind '{}' '{root}'\n", self.rootfs.display());
        for (host, inside) in &self.mounts {
            script += &format!("mount --bind '{}' '{root}{inside}'\n", host.display());
        }
        for volume in &self.stage.volumes {
            script += &format!(
                "mount --bind '{}' '{root}{volume}'\n",
                self.volume.path().display()
            );
        }
        script += &format!("mount -t proc proc '{root}/proc'\n");
        script += &format!("mount -o remount,bind,ro '{root}'\n");
        script += &format!(
            "exec chroot --userspec={} '{root}' /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \"$@\"\n",
            self.stage.user
        );
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-ec",
                &script,
                "sh",
            ])
            .args(self.env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(args)
            .kill_on_drop(true);
        command
    }

    /// The image's entrypoint with `args` (its CMD when none).
    fn entrypoint(&self, args: &[&str]) -> Vec<String> {
        let mut all = self.stage.entrypoint.clone();
        if args.is_empty() {
            all.extend(self.stage.cmd.iter().cloned());
        } else {
            all.extend(args.iter().map(|a| a.to_string()));
        }
        all
    }

    async fn run(&self, args: &[String]) -> std::process::Output {
        self.command(args).output().await.unwrap()
    }

    fn spawn(&self, args: &[String], log: &Path) -> Child {
        let log = std::fs::File::create(log).unwrap();
        self.command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

#[tokio::test]
async fn the_broker_and_agent_images_run_read_only_and_grant_through_the_hub() {
    if on_postgres() {
        return; // the images' default store is the embedded one
    }
    let logs = tempfile::tempdir().unwrap();
    let mut broker = Container::new("broker");

    // What the image promises before anything runs.
    assert_ne!(broker.stage.user.split(':').next(), Some("0"), "runs as root");
    for key in ["JITGATE_LISTEN", "JITGATE_HUB_LISTEN"] {
        let addr: std::net::SocketAddr = broker.env(key).parse().unwrap();
        assert!(addr.ip().is_unspecified(), "{key} listens on {addr} only");
        assert!(
            broker.stage.expose.contains(&addr.port()),
            "{key}: port {} not exposed",
            addr.port()
        );
    }
    assert_eq!(broker.stage.volumes, [broker.env("JITGATE_DATA_DIR")]);
    let healthcheck = broker.stage.healthcheck.clone().expect("a health check");

    // An operator's settings: the name clients use, and (for the test
    // running beside others) ports of its own on every address.
    let (api, hub) = (free_port(), free_port());
    broker.set("JITGATE_LISTEN", &format!("0.0.0.0:{api}"));
    broker.set("JITGATE_HUB_LISTEN", &format!("0.0.0.0:{hub}"));
    broker.set("JITGATE_SERVER_NAMES", "127.0.0.1");
    broker.mount(
        workspace().join("deploy/quickstart/catalog.toml"),
        "/etc/jitgate/catalog.toml",
    );

    // The root is read-only; the volume is not.
    let probe = broker
        .run(&["/bin/sh".into(), "-c".into(), "touch /probe".into()])
        .await;
    assert!(
        !probe.status.success() && said(&probe).contains("Read-only file system"),
        "{}",
        said(&probe)
    );
    // An administrative command: the entrypoint's program, other arguments.
    let program = broker.stage.entrypoint[0].clone();
    let load = [
        program,
        "catalog".into(),
        "load".into(),
        "/etc/jitgate/catalog.toml".into(),
    ];
    let loaded = broker.run(&load).await;
    assert!(loaded.status.success(), "{}", said(&loaded));
    let tokens: std::collections::HashMap<String, String> = String::from_utf8_lossy(&loaded.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(u, t)| (u.to_owned(), t.to_owned()))
        .collect();

    // Served by the image's entrypoint; its health check says when ready.
    let _serving = broker.spawn(&broker.entrypoint(&[]), &logs.path().join("broker.log"));
    eventually(Duration::from_secs(30), "the health check passes", || async {
        broker.run(&healthcheck).await.status.success().then_some(())
    })
    .await;
    let url = format!("https://127.0.0.1:{api}");
    let ca = broker.volume.path().join("ca.pem");
    let client = |user: &str| ApiClient::new(&url, Some(tokens[user].clone()), Some(&ca)).unwrap();
    let join = client("admin")
        .create_join_token(&CreateJoinTokenBody {
            configuration: ConfigId::new("aws-sandbox").unwrap(),
            ttl_seconds: None,
        })
        .await
        .unwrap();

    // The agent's image enrolls through the API and connects to the hub.
    let mut agent = Container::new("agent");
    assert_ne!(agent.stage.user.split(':').next(), Some("0"), "runs as root");
    agent.set("JITGATE_BROKER", &url);
    agent.set("JITGATE_JOIN_TOKEN", &join.token);
    agent.set("JITGATE_CA_FINGERPRINT", &join.ca_fingerprint);
    let enrolled = agent.run(&agent.entrypoint(&["enroll"])).await;
    assert!(enrolled.status.success(), "{}", said(&enrolled));
    // Unhealthy until it has reached the broker, healthy once it has.
    let agent_healthcheck = agent.stage.healthcheck.clone().expect("a health check");
    let unreached = agent.run(&agent_healthcheck).await;
    assert!(
        !unreached.status.success() && said(&unreached).contains("has not reached a broker yet"),
        "{}",
        said(&unreached)
    );
    agent.set("JITGATE_AGENT_PROVIDER", "sandbox");
    let _running = agent.spawn(&agent.entrypoint(&[]), &logs.path().join("agent.log"));
    eventually(
        Duration::from_secs(30),
        "the agent's health check passes",
        || async { agent.run(&agent_healthcheck).await.status.success().then_some(()) },
    )
    .await;

    let asked = request(&client("alice"), "aws-dev-admin", 600).await;
    let approved = client("bob").approve(asked.id, None).await.unwrap();
    let grant = approved.grant.expect("granted on approval");
    eventually(Duration::from_secs(30), "the agent applies the grant", || async {
        client("admin").grant(grant).await.ok()?.applied_at
    })
    .await;
}
