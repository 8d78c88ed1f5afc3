//! `tinyvm serve`: the child process of `tinyvm pingpong` that hosts a guest. It listens for a
//! migration on a 127.0.0.1 ephemeral port and obeys the line protocol of
//! [`protocol`](super::protocol) on stdin/stdout: start a guest, receive one, send the one it
//! holds to another child's port, report on it. [`Child`] is that state machine, also used by
//! `tinyvm save` to migrate into a file.

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use vmstate_migration::VmParts as _;

use vmstate_migration::transport::Transport;
use vmstate_migration::{migrate, receive, ReceiveSettings, Report};

use super::protocol::{output_word, Seen};
use super::soft::{SoftDest, SoftGuest};
use super::{settings, Mode};

/// The guest a child holds, if any.
// One per child process; without the `kvm` feature the soft guest is the only large variant.
#[allow(clippy::large_enum_variant)]
enum Held {
    None,
    Soft(SoftGuest),
    #[cfg(feature = "kvm")]
    Kvm(super::live::KvmSource),
}

/// A process that can host a guest of one [`Mode`] (see the module docs).
pub struct Child {
    mode: Mode,
    listener: TcpListener,
    held: Held,
    /// Fault injection: the guest held here was received with `RECV stall` and does not run.
    frozen: bool,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("mode", &self.mode)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// A child holding no guest, listening on a 127.0.0.1 ephemeral port.
    ///
    /// # Errors
    ///
    /// The listener cannot be bound.
    pub fn new(mode: Mode) -> Result<Self, String> {
        Ok(Child {
            mode,
            listener: TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?,
            held: Held::None,
            frozen: false,
        })
    }

    /// The port a source connects to for `RECV`.
    ///
    /// # Errors
    ///
    /// The listener's address cannot be read.
    pub fn port(&self) -> Result<u16, String> {
        Ok(self
            .listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .port())
    }

    fn ensure_empty(&self) -> Result<(), String> {
        match self.held {
            Held::None => Ok(()),
            _ => Err("a guest is running here already".into()),
        }
    }

    /// `START`: a fresh guest, running.
    ///
    /// # Errors
    ///
    /// A guest is held already, or the guest cannot be created.
    pub fn start(&mut self) -> Result<String, String> {
        self.ensure_empty()?;
        match self.mode {
            Mode::Soft => {
                let mut g = SoftGuest::new(false)?;
                g.run(true);
                self.held = Held::Soft(g);
            }
            Mode::Kvm => self.start_kvm()?,
        }
        Ok("OK".into())
    }

    #[cfg(feature = "kvm")]
    fn start_kvm(&mut self) -> Result<(), String> {
        use super::{live::KvmSource, Vm};
        let vm = Vm::new().map_err(|e| e.to_string())?;
        self.held = Held::Kvm(KvmSource::start(vm, super::machine()).map_err(|e| e.to_string())?);
        Ok(())
    }

    #[cfg(not(feature = "kvm"))]
    fn start_kvm(&mut self) -> Result<(), String> {
        Err("built without the `kvm` feature".into())
    }

    fn accept(&self) -> Result<TcpStream, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(|e| e.to_string())?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no source connected within 30 s".into());
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// `RECV [corrupt] [stall]`: receives a guest on the listener and starts it; the answer has
    /// what the destination loaded, checked before the guest started. Fault injection:
    /// `corrupt` flips a byte of the received RAM before the check; `stall` (software guest
    /// only) never starts the guest, until it is sent away.
    ///
    /// # Errors
    ///
    /// A guest is held already, the migration or the check failed, or `stall` on KVM.
    pub fn recv(&mut self, corrupt: bool, stall: bool) -> Result<String, String> {
        self.ensure_empty()?;
        match self.mode {
            Mode::Soft => {
                // The destination VM exists before the source connects (no setup in downtime).
                let mut d = SoftDest::new(corrupt, stall)?;
                let mut t = self.accept()?;
                let r = receive(&mut d, &mut t, &ReceiveSettings::default())
                    .map_err(|e| e.to_string())?;
                let seen = d.seen.take().ok_or("not resumed")??;
                self.held = Held::Soft(d.guest);
                self.frozen = stall;
                Ok(format!("RECEIVED {} {}", seen.words(), r.bytes))
            }
            // A KVM guest runs from the moment its vCPU starts; it cannot be held back without
            // racing it, so stall injection is for the software guest.
            Mode::Kvm if stall => Err("`stall` needs the software guest (--soft)".into()),
            Mode::Kvm => self.recv_kvm(corrupt),
        }
    }

    #[cfg(feature = "kvm")]
    fn recv_kvm(&mut self, corrupt_ram: bool) -> Result<String, String> {
        use std::sync::{Arc, Mutex, PoisonError};

        use super::live::KvmDest;
        // The destination VM exists before the source connects (no setup in downtime).
        let mut d = KvmDest::new(super::machine()).map_err(|e| e.to_string())?;
        let seen = Arc::new(Mutex::new(None));
        let (s2, ram) = (Arc::clone(&seen), d.ram().clone());
        d.before_start = Some(Box::new(move |_vm| {
            if corrupt_ram {
                super::soft::corrupt(&ram);
            }
            *s2.lock().unwrap_or_else(PoisonError::into_inner) = Some(Seen::inspect(&ram));
        }));
        let mut t = self.accept()?;
        let r = receive(&mut d, &mut t, &ReceiveSettings::default()).map_err(|e| e.to_string())?;
        let src = d
            .started
            .take()
            .ok_or("not resumed")?
            .map_err(|e| format!("restoring the guest after the ack: {e}"))?;
        self.held = Held::Kvm(src);
        let seen = seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or("no check before start")??;
        Ok(format!("RECEIVED {} {}", seen.words(), r.bytes))
    }

    #[cfg(not(feature = "kvm"))]
    fn recv_kvm(&mut self, _corrupt: bool) -> Result<String, String> {
        Err("built without the `kvm` feature".into())
    }

    /// `SEND <port>`: migrates the guest held here to the child listening on `port`.
    ///
    /// # Errors
    ///
    /// No guest here, or the connection or the migration failed (the guest then stays here).
    pub fn send(&mut self, port: u16) -> Result<String, String> {
        let mut t = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        t.set_nodelay(true).map_err(|e| e.to_string())?;
        self.send_over(&mut t)
    }

    /// Migrates the guest held here over `t` (TCP for a hop, a file for `save`); the answer is
    /// the `SENT` line.
    ///
    /// # Errors
    ///
    /// No guest here, or the migration failed (the guest then stays here).
    pub fn send_over<T: Transport>(&mut self, t: &mut T) -> Result<String, String> {
        let t = &mut *t;
        let s = settings();
        self.frozen = false;
        let (report, seen, out): (Report, Seen, Vec<u8>) =
            match std::mem::replace(&mut self.held, Held::None) {
                Held::None => return Err("no guest here".into()),
                Held::Soft(mut g) => match migrate(&mut g, t, &s) {
                    Ok(r) => (r, Seen::inspect(g.ram())?, g.take_output()),
                    Err(e) => {
                        self.held = Held::Soft(g);
                        return Err(e.to_string());
                    }
                },
                #[cfg(feature = "kvm")]
                Held::Kvm(mut g) => match migrate(&mut g, t, &s) {
                    Ok(r) => {
                        let seen = Seen::inspect(g.ram())?;
                        let out = kvm_output(&mut g)?;
                        drop(g.into_vm());
                        (r, seen, out)
                    }
                    Err(e) => {
                        self.held = Held::Kvm(g);
                        return Err(e.to_string());
                    }
                },
            };
        Ok(format!(
            "SENT {} {} {} {} {} {}",
            seen.words(),
            report.bytes,
            report.passes.len(),
            report.downtime.as_micros(),
            report.total_time.as_micros(),
            output_word(&out)
        ))
    }

    /// `STATUS`: what the running guest has done since the last report (it is stopped for the
    /// check, then runs on).
    ///
    /// # Errors
    ///
    /// No guest here, or the check failed.
    pub fn status(&mut self) -> Result<String, String> {
        let (seen, out) = match &mut self.held {
            Held::None => return Err("no guest here".into()),
            Held::Soft(g) => {
                g.stop();
                let r = (Seen::inspect(g.ram()), g.take_output());
                if !self.frozen {
                    g.run(false);
                }
                r
            }
            #[cfg(feature = "kvm")]
            Held::Kvm(g) => {
                let out = kvm_output(g)?;
                let seen = Seen::inspect(g.ram());
                if !self.frozen {
                    g.run();
                }
                (seen, out)
            }
        };
        Ok(format!("STATUS {} {}", seen?.words(), output_word(&out)))
    }

    /// Stops the guest held here, if any.
    pub fn stop(&mut self) {
        if let Held::Soft(g) = &mut self.held {
            g.stop();
        }
    }
}

/// The KVM guest's serial output since the last call (the vCPU is parked for it).
#[cfg(feature = "kvm")]
fn kvm_output(g: &mut super::live::KvmSource) -> Result<Vec<u8>, String> {
    Ok(g.vm()
        .map_err(|e| e.to_string())?
        .serial
        .state
        .take_tx_output())
}

/// `tinyvm serve`: prints `READY <port>`, then answers the commands on stdin until `QUIT` or
/// the end of input.
///
/// # Errors
///
/// The listener cannot be bound, or stdin/stdout fail.
pub fn serve(mode: Mode) -> Result<(), String> {
    let mut me = Child::new(mode)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {}", me.port()?).map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("START"), _) => me.start(),
            (Some("RECV"), w) => {
                let faults: Vec<&str> = w.into_iter().chain(words.clone()).collect();
                me.recv(faults.contains(&"corrupt"), faults.contains(&"stall"))
            }
            (Some("SEND"), Some(p)) => p
                .parse()
                .map_err(|e| format!("port {p}: {e}"))
                .and_then(|p| me.send(p)),
            (Some("STATUS"), _) => me.status(),
            (Some("QUIT"), _) => break,
            _ => Err(format!("unknown command {line:?}")),
        };
        let answer = answer.unwrap_or_else(|e| format!("FAIL {}", e.replace('\n', " ")));
        writeln!(stdout, "{answer}").map_err(|e| e.to_string())?;
        stdout.flush().map_err(|e| e.to_string())?;
    }
    me.stop();
    Ok(())
}
