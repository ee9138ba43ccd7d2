//! tmux helpers shared by the end-to-end tests (`send-keys`, `capture-pane` at 80×24).
#![allow(dead_code)]
use mislas::config::Config;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const DATA: &str = "/usr/share/datasets/fashion-mnist";
pub const SESSION: &str = "mislas";

/// A tmux server of its own (`-L`), killed on drop.
pub struct Tmux {
    /// The `-L` socket name.
    pub socket: String,
}

impl Tmux {
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", SESSION, k]);
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", SESSION, "-l", text]);
        std::thread::sleep(Duration::from_millis(100));
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION])
    }

    pub fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", SESSION, format])
            .trim()
            .to_owned()
    }

    /// Waits until the screen satisfies `pred`; panics with the screen after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Whether the line holding `label` shows `label` followed by a percentage (`Top-1 12.34%`).
pub fn shows_figure(screen: &str, label: &str) -> bool {
    screen.lines().any(|l| {
        l.match_indices(label).any(|(i, _)| {
            let rest = &l[i + label.len()..];
            let num: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            num.contains('.') && rest[num.len()..].starts_with('%')
        })
    })
}

/// Moves the form to `key`, replaces its value with `value` and applies it.
pub fn set_field(t: &Tmux, key: &str, value: &str) {
    let idx = Config::keys().iter().position(|k| k == key).unwrap();
    t.keys(&["Home"]);
    for _ in 0..idx {
        t.keys(&["Down"]);
    }
    t.keys(&["Enter", "C-u"]);
    t.text(value);
    t.keys(&["Enter"]);
}

impl Tmux {
    /// Starts session [`SESSION`] at 80×24 in `cwd` running bash, then `mislas` (`bin`) in it
    /// with `XDG_CONFIG_HOME` at `config_home`, printing `mislas-exit=<status>` when it ends.
    pub fn start_mislas(&self, cwd: &Path, bin: &str, config_home: &Path) {
        self.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            &cwd.display().to_string(),
            "env",
            "-u",
            "NO_COLOR",
            "TERM=xterm-256color",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        self.text(&format!(
            "XDG_CONFIG_HOME='{}' '{bin}'; echo mislas-exit=$?",
            config_home.display()
        ));
        self.keys(&["Enter"]);
    }
}
