//! Network namespaces and veth pairs for tests, removed on drop (also when
//! the test fails). Names carry the process id so parallel runs never
//! collide.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command};

pub fn sh(cmd: &str) {
    let status = Command::new("sh").arg("-c").arg(cmd).status().expect("run sh");
    assert!(status.success(), "command failed: {cmd}");
}

/// Namespaces created by a test; deleted (with their links) on drop.
pub struct Namespaces {
    pub names: Vec<String>,
    pub children: Vec<Child>,
}

impl Namespaces {
    pub fn new(prefix: &str, count: usize) -> Self {
        let pid = std::process::id();
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}{pid}-{i}")).collect();
        for n in &names {
            let _ = Command::new("ip").args(["netns", "del", n]).stderr(std::process::Stdio::null()).status();
            sh(&format!("ip netns add {n}"));
            sh(&format!("ip -n {n} link set lo up"));
        }
        Namespaces { names, children: Vec::new() }
    }

    pub fn exec(&self, ns: usize, cmd: &str) {
        sh(&format!("ip netns exec {} {cmd}", self.names[ns]));
    }

    /// Runs `f` on a thread that has entered namespace `ns`: sockets it
    /// creates live in that namespace.
    pub fn within<T: Send + 'static>(&self, ns: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.names[ns]);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only, with a valid fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}
