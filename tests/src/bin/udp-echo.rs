//! `udp-echo`: the UDP service of the end-to-end backends, and the client that asks it.
//!
//! - `udp-echo serve NAME ADDR:PORT...` binds one socket to each address given (a DSR backend
//!   binds the VIP itself, so every reply leaves from the address the client sent to, which is
//!   what the client's connected socket insists on) and answers every datagram with
//!   `backend=NAME <the datagram>`. Runs until killed.
//! - `udp-echo ask ADDR:PORT COUNT` sends COUNT datagrams, each from a new socket (so a new
//!   source port, a new flow for the balancer), connected to ADDR:PORT so that only a reply from
//!   exactly that address and port is accepted; prints each reply on a line, or `timeout`.
//!   Exits non-zero if any request went unanswered.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

fn serve(name: &str, addrs: &[String]) -> Result<(), String> {
    let mut threads = Vec::new();
    for text in addrs {
        let addr: SocketAddr = text
            .parse()
            .map_err(|e| format!("{text:?} is not ADDR:PORT: {e}"))?;
        let socket = UdpSocket::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        let prefix = format!("backend={name} ");
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let mut reply = prefix.as_bytes().to_vec();
                        reply.extend_from_slice(&buf[..n]);
                        if let Err(e) = socket.send_to(&reply, peer) {
                            eprintln!("udp-echo: reply to {peer} failed: {e}");
                        }
                    }
                    Err(e) => eprintln!("udp-echo: receive on {addr} failed: {e}"),
                }
            }
        }));
    }
    eprintln!("udp-echo: ready");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn ask(target: &str, count: &str) -> Result<bool, String> {
    let target: SocketAddr = target
        .parse()
        .map_err(|e| format!("{target:?} is not ADDR:PORT: {e}"))?;
    let count: u32 = count
        .parse()
        .map_err(|e| format!("{count:?} is not a count: {e}"))?;
    let mut all_answered = true;
    for i in 0..count {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("cannot bind: {e}"))?;
        socket
            .connect(target)
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        socket
            .send(format!("request {i}").as_bytes())
            .map_err(|e| format!("cannot send to {target}: {e}"))?;
        let mut buf = [0u8; 2048];
        match socket.recv(&mut buf) {
            Ok(n) => println!("{}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {
                println!("timeout");
                all_answered = false;
            }
        }
    }
    Ok(all_answered)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("serve") if args.len() >= 4 => serve(&args[2], &args[3..]).map(|()| true),
        Some("ask") if args.len() == 4 => ask(&args[2], &args[3]),
        _ => Err("usage: udp-echo serve NAME ADDR:PORT... | udp-echo ask ADDR:PORT COUNT".into()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("udp-echo: {e}");
            ExitCode::from(2)
        }
    }
}
