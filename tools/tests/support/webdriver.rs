// SPDX-License-Identifier: GPL-2.0

//! A small WebDriver client (W3C WebDriver over HTTP/1.1, JSON bodies) for Debian's
//! `chromedriver` and headless `chromium`: a session, navigation, scripts, clicks, keys, the
//! browser's console log and screenshots. Only what the page tests use.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser and driver Debian packages (`chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// WebDriver's key codes.
pub mod key {
    pub const HOME: &str = "\u{E011}";
    pub const END: &str = "\u{E010}";
    pub const LEFT: &str = "\u{E012}";
    pub const RIGHT: &str = "\u{E014}";
    pub const SHIFT: &str = "\u{E008}";
}

/// A chromedriver process and one browser session in it; both end when it is dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a window of `width` x `height`.
    pub fn start(width: u32, height: u32) -> Result<Self, String> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).exists() {
                return Err(format!(
                    "{tool} is missing: run scripts/install-deps.sh (packages chromium and \
                     chromium-driver)"
                ));
            }
        }
        // A free port: bound by the kernel, given back, then named to the driver.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for chromedriver: {e}"))?
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {CHROMEDRIVER}: {e}"))?;
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match browser.call("GET", "/status", None) {
                Ok(v) if v["ready"] == true => break,
                _ if Instant::now() > deadline => {
                    return Err("chromedriver did not become ready within 20 s".to_string())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = browser.call("POST", "/session", Some(caps))?;
        browser.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("chromedriver gave no session: {v}"))?
            .to_string();
        Ok(browser)
    }

    /// One request; the response's `value`, or the error WebDriver reported.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| format!("cannot reach chromedriver: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("writing to chromedriver: {e}"))?;
        // chromedriver keeps the connection open: the body is Content-Length bytes long.
        let mut response = Vec::new();
        let mut buf = [0u8; 65536];
        let (head_len, body_len) = loop {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("reading from chromedriver: {e}"))?;
            if n == 0 {
                return Err(format!("chromedriver closed {method} {path} early"));
            }
            response.extend_from_slice(&buf[..n]);
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        format!("chromedriver's answer to {method} {path} has no length")
                    })?;
                break (end + 4, len);
            }
        };
        while response.len() < head_len + body_len {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("reading from chromedriver: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "chromedriver cut its answer to {method} {path} short"
                ));
            }
            response.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8_lossy(&response[head_len..head_len + body_len]).into_owned();
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("chromedriver's answer to {method} {path}: {e}: {body}"))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            return Err(format!(
                "{method} {path}: {err}: {}",
                value["message"].as_str().unwrap_or("")
            ));
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) -> Result<(), String> {
        self.session_call("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body: `arguments` are `args`, `return` gives the value).
    pub fn run(&self, script: &str, args: Value) -> Result<Value, String> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `script` returns something other than null or false, at most `limit`.
    pub fn wait_for(&self, script: &str, limit: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.run(script, json!([]))?;
            if !v.is_null() && v != false {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("waited {limit:?} for `{script}`"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The element `css` selects (its WebDriver reference).
    pub fn find(&self, css: &str) -> Result<String, String> {
        let v = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("no element for {css}"))
    }

    /// Clicks the element `css` selects, as a person would (scrolled into view, at its centre).
    pub fn click(&self, css: &str) -> Result<(), String> {
        let id = self.find(css)?;
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .map(drop)
    }

    /// Clicks at (`x`, `y`) in the viewport.
    pub fn click_at(&self, x: f64, y: f64) -> Result<(), String> {
        let actions = json!({"actions": [{"type": "pointer", "id": "mouse",
        "parameters": {"pointerType": "mouse"},
        "actions": [
            {"type": "pointerMove", "duration": 0, "origin": "viewport",
             "x": x.round() as i64, "y": y.round() as i64},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0},
        ]}]});
        self.session_call("POST", "/actions", Some(actions))
            .map(drop)
    }

    /// Presses and releases each of `keys` in turn (with `shift` held, if given), as a person
    /// would on the focused page.
    pub fn keys(&self, keys: &[&str], shift: bool) -> Result<(), String> {
        let mut actions = Vec::new();
        if shift {
            actions.push(json!({"type": "keyDown", "value": key::SHIFT}));
        }
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        if shift {
            actions.push(json!({"type": "keyUp", "value": key::SHIFT}));
        }
        self.session_call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )?;
        self.session_call("DELETE", "/actions", None).map(drop)
    }

    /// The browser's console log since the last call: (level, message) each.
    pub fn console(&self) -> Result<Vec<(String, String)>, String> {
        let v = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})))?;
        Ok(v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A PNG of the window, to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let v = self.session_call("GET", "/screenshot", None)?;
        let png = decode_base64(v.as_str().unwrap_or(""));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64, decoded (padding and anything else outside the alphabet skipped).
pub fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut n) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}
