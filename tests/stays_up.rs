//! The service stays up under resource pressure: the real binary in a child process with few file
//! descriptors. Loopback only; every wait is a bounded loop.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A `rapport serve` child, killed when dropped.
struct ChildServer {
    child: Child,
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `rapport serve` with at most `open_files` file descriptors (RLIMIT_NOFILE).
fn serve_with_open_files(open_files: u32) -> ChildServer {
    let grpc_addr = free_loopback_addr();
    let metrics_addr = free_loopback_addr();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_rapport"))
        .args([
            "serve",
            "--grpc-addr",
            &grpc_addr.to_string(),
            "--metrics-addr",
            &metrics_addr.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rapport starts");
    ChildServer {
        child,
        grpc_addr,
        metrics_addr,
    }
}

/// Whether gRPC health answers SERVING within one short attempt.
async fn serving(addr: SocketAddr) -> bool {
    let attempt = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(response)) if response.get_ref().status == 1
    )
}

/// Polls health up to `attempts` times, 100 ms apart.
async fn serving_within(addr: SocketAddr, attempts: usize) -> bool {
    for _ in 0..attempts {
        if serving(addr).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn scrape(addr: SocketAddr) -> String {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// D1: more idle connections than file descriptors make accept fail with EMFILE. Before, tonic's
/// incoming stream ended there and gRPC was gone for good (metrics still answered); now accept
/// errors are counted, backed off and retried, and gRPC serves again once descriptors free up.
#[tokio::test]
async fn grpc_serves_again_after_running_out_of_file_descriptors() {
    let server = serve_with_open_files(48);
    assert!(
        serving_within(server.grpc_addr, 300).await,
        "rapport never served"
    );
    // Twice the descriptor limit in idle connections: accept runs out of descriptors.
    let idle: Vec<TcpStream> = (0..96)
        .map(|_| TcpStream::connect(server.grpc_addr).expect("kernel backlog accepts"))
        .collect();
    // The server accepts them as they arrive and runs out of descriptors; let it retry a while
    // (its metrics listener shares the descriptor limit, so it is read afterwards).
    assert!(
        !serving_within(server.grpc_addr, 3).await,
        "no descriptor is left for a new connection"
    );
    drop(idle);
    assert!(
        serving_within(server.grpc_addr, 100).await,
        "gRPC serves again once the idle connections are gone"
    );
    let metrics = scrape(server.metrics_addr);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("rapport_grpc_accept_errors_total{stage=\"accept\"}")),
        "accept errors are counted: {metrics}"
    );
}
