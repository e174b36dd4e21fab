//! The real `suanli` binary end to end: token create, serve, registry import, usage import
//! (twice), metrics, and a graceful shutdown on SIGTERM, on SQLite.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn suanli(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(args)
        .env_remove("SUANLI_TOKEN")
        .env_remove("SUANLI_SERVER")
        .output()
        .expect("suanli runs");
    assert!(
        out.status.success(),
        "suanli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until the server accepts connections; the child is checked so a failed start is reported.
fn wait_listening(child: &mut Child, port: u16) {
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("suanli serve exited early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("suanli serve did not listen on {port}");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `suanli serve` on `url` at `addr` without the console, logging JSON lines to `stderr`;
/// `extra` flags follow.
fn serve(url: &str, addr: &str, extra: &[&str], stderr: Stdio) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args([
            "serve",
            "--addr",
            addr,
            "--database-url",
            url,
            "--http-addr",
            "off",
            "--log-json",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("serve starts");
    Server(child)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

// Tokens, registry import, usage import with a rejects file, an idempotent re-import, metrics and SIGTERM all work on the real binary.
#[test]
fn serve_and_import_with_the_real_binary() {
    let dir = std::env::temp_dir().join(format!("suanli-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/data/suanli.db", dir.display());
    let token = |role: &[&str]| {
        let mut args = vec!["token", "create", "--database-url", &url];
        args.extend_from_slice(role);
        let out = suanli(&args);
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            token.starts_with("sl_") && !token.contains('\n'),
            "one token on stdout: {token:?}"
        );
        token
    };
    let admin = token(&["--role", "admin"]);
    let provider_a = token(&["--role", "provider", "--provider", "dc-a"]);

    let (port, metrics_port) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{port}");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut server = serve(
        &url,
        &addr,
        &["--metrics-addr", &metrics_addr],
        Stdio::null(),
    );
    wait_listening(&mut server.0, port);

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let registry = root.join("examples/worked/registry.toml");
    let out = suanli(&[
        "registry",
        "import",
        "--file",
        registry.to_str().unwrap(),
        "--server",
        &addr,
        "--token",
        &admin,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("registry version 1 loaded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let usage = dir.join("usage.csv");
    let worked = std::fs::read_to_string(root.join("examples/worked/usage.csv")).unwrap();
    write(
        &usage,
        &format!(
            "{worked}dc-a,bad1,ent-a,a-dom,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,1.001\n\
             dc-a,bad2,ent-a,nope,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,1.00\n"
        ),
    );
    let import = |token: &str| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_suanli"))
            .args([
                "usage",
                "import",
                "--file",
                usage.to_str().unwrap(),
                "--batch-size",
                "2",
            ])
            .env("SUANLI_SERVER", &addr)
            .env("SUANLI_TOKEN", token)
            .current_dir(&dir)
            .output()
            .expect("import runs");
        assert_eq!(
            out.status.code(),
            Some(3),
            "rows were rejected: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = import(&admin);
    assert!(
        first.contains("accepted 5, duplicate 0, conflict 0, rejected 2"),
        "{first}"
    );
    let rejects = std::fs::read_to_string(dir.join("usage.csv.rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "provider,record_id,line,reason,message");
    assert!(
        lines[1].starts_with("dc-a,bad1,7,amount_precision,"),
        "{rejects}"
    );
    assert!(
        lines[2].starts_with("dc-a,bad2,8,unknown_sku,"),
        "{rejects}"
    );
    assert_eq!(lines.len(), 3);

    let again = import(&admin);
    assert!(
        again.contains("accepted 0, duplicate 5, conflict 0, rejected 2"),
        "{again}"
    );
    // A provider token: its own records are duplicates, the other provider's are rejected.
    let as_a = import(&provider_a);
    assert!(
        as_a.contains("accepted 0, duplicate 3, conflict 0, rejected 4"),
        "{as_a}"
    );
    assert!(
        std::fs::read_to_string(dir.join("usage.csv.rejects.csv"))
            .unwrap()
            .contains("dc-b,r2,3,provider_mismatch,")
    );

    let mut metrics = TcpStream::connect(("127.0.0.1", metrics_port)).expect("metrics endpoint");
    metrics
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    metrics.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("suanli_ingest_records_total{outcome=\"accepted\"} 5"),
        "{body}"
    );
    assert!(body.contains("suanli_store_commit_seconds_bucket"));

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = server.0.wait().expect("serve exits");
    assert!(exit.success(), "graceful shutdown exits 0: {exit}");

    // Started again on the same database: the balance figures of the newest programme year
    // are prepared at start, before any page or look-up asks for them.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = serve(&url, &addr, &[], Stdio::piped());
    let stderr = server.0.stderr.take().expect("piped stderr");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ready = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if line.contains("balance figures ready") => break line,
            Ok(_) => {}
            Err(e) => panic!("no \"balance figures ready\" in the log within 60 s: {e}"),
        }
    };
    assert!(ready.contains("\"year\":2025"), "{ready}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// Invalid configuration stops `suanli serve` at start with the key, its origin and the reason,
// from the environment, the file and a flag alike; a flag beats the invalid env value.
#[test]
fn invalid_configuration_fails_at_start_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("suanli-config-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("suanli.toml");
    write(&file, "[limits]\nconcurrent_requests_max = 0\n");
    let serve = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_suanli"));
        c.arg("serve").args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("suanli runs")
    };
    for (env, args, expected) in [
        (
            vec![("SUANLI_LIMITS_REQUEST_DEADLINE_MS", "0")],
            vec![],
            "limits.request_deadline_ms (from env SUANLI_LIMITS_REQUEST_DEADLINE_MS): must be 1 to",
        ),
        (
            vec![],
            vec!["--config", file.to_str().unwrap()],
            "limits.concurrent_requests_max (from file",
        ),
        (
            vec![("SUANLI_ADDR", "127.0.0.1:50051")],
            vec!["--addr", "not-an-address"],
            "server.addr (from flag --addr)",
        ),
    ] {
        let out = serve(&env, &args);
        assert!(!out.status.success(), "{args:?} {env:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
