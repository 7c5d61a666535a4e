//! Servers and clients of the real-traffic tests, as threads of the test
//! (sockets bound inside a namespace with [`super::guards::Netns::run`] stay
//! in it).

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// How long a client waits to connect, and then for an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A server thread, stopped and joined on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Answers every connection with `<marker>\n` and closes it.
    pub fn tcp(listener: TcpListener, marker: &'static str) -> Server {
        listener.set_nonblocking(true).unwrap();
        Server::spawn(move |stop| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(format!("{marker}\n").as_bytes());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
    }

    /// Answers every datagram with `answer(datagram)`.
    pub fn udp(socket: UdpSocket, answer: impl Fn(&str) -> String + Send + 'static) -> Server {
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Server::spawn(move |stop| {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let reply = answer(&String::from_utf8_lossy(&buf[..n]));
                        let _ = socket.send_to(reply.as_bytes(), from);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("recv_from: {e}"),
                }
            }
        })
    }

    fn spawn(f: impl FnOnce(&AtomicBool) + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Server {
            stop,
            thread: Some(thread::spawn(move || f(&flag))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr:port` and reads what the server says until it closes
/// (a [`Server::tcp`]'s marker, or any one-line answer).
pub fn tcp_hello(addr: Ipv4Addr, port: u16) -> io::Result<String> {
    let to = SocketAddr::V4(SocketAddrV4::new(addr, port));
    let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.trim_end().to_string())
}
