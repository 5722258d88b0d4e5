//! CLI child processes that cannot hang a test.

use std::io::Write;

/// How long a CLI child process may take before the test fails (instead of hanging).
const CHILD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `cmd` to completion with `stdin` (closed afterwards) and returns its output; a
/// child still running after [`CHILD_DEADLINE`] is killed and the test fails, naming it.
pub fn run_bounded(cmd: &mut std::process::Command, stdin: &str) -> std::process::Output {
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run portcullis");
    let pid = child.id();
    if let Some(mut input) = child.stdin.take() {
        // The child may exit without reading: a broken pipe is not an error here.
        let _ = input.write_all(stdin.as_bytes());
    }
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(CHILD_DEADLINE) {
        Ok(result) => result.expect("wait for portcullis"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what} was still running after {CHILD_DEADLINE:?}: killed");
        }
    }
}
