// The ActionLoop launcher built with every Rust action (as apache/openwhisk-runtime-rust's action_loop): one JSON
// line per activation on stdin, the answer as one JSON line on file descriptor 3. The compile script points the `use`
// below at the action's --main.
use actions::main as action_main;

use serde_json::{Map, Value};
use std::env;
use std::fmt::Display;
use std::fs::File;
use std::io::{stderr, stdin, stdout, BufRead, Write};
use std::os::unix::io::FromRawFd;

fn reply(out: &mut File, answer: &Value) {
    let mut line = serde_json::to_string(answer).unwrap_or_else(|e| {
        eprintln!("error: {}", e);
        serde_json::json!({ "error": e.to_string() }).to_string()
    });
    line.push('\n');
    out.write_all(line.as_bytes()).expect("cannot write on fd 3");
}

fn failed<E: Display>(out: &mut File, error: E) {
    eprintln!("error: {}", error);
    reply(out, &serde_json::json!({ "error": error.to_string() }));
}

fn main() {
    let mut out = unsafe { File::from_raw_fd(3) };
    if env::var_os("__OW_WAIT_FOR_ACK").map_or(false, |v| !v.is_empty()) {
        out.write_all(b"{\"ok\": true}\n").expect("cannot write on fd 3");
    }
    for line in stdin().lock().lines() {
        let line = line.expect("cannot read stdin");
        match serde_json::from_str::<Map<String, Value>>(&line) {
            Ok(mut request) => {
                let params = request.remove("value").unwrap_or(Value::Null);
                for (key, value) in request {
                    let text = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    env::set_var(format!("__OW_{}", key.to_uppercase()), text);
                }
                match action_main(params) {
                    Ok(answer) => reply(&mut out, &answer),
                    Err(error) => failed(&mut out, error),
                }
            }
            Err(error) => failed(&mut out, error),
        }
        let _ = stdout().flush();
        let _ = stderr().flush();
    }
}
