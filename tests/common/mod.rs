//! What the integration tests share: running a script in the project's Python, where NumPy,
//! PyTorch, torchvision and Pillow compute the reference values.
use std::process::Command;

/// The project venv's Python (`scripts/setup.sh` installs it).
const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

/// Runs `script` (`python -c script args…`) and returns its standard output.
///
/// # Panics
/// If Python cannot start, or the script fails (its standard error is shown).
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("the venv's Python runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "the Python script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the script's output is UTF-8")
}
