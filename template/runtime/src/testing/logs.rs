//! Log events captured as JSON objects, per test thread.

use std::{
    cell::RefCell,
    io,
    sync::{Arc, Mutex, Once, PoisonError},
};

use serde_json::Value;

/// The log events of the test that captures them. Tests that read logs use
/// the default current-thread runtime, where every task of the service runs
/// on the test's thread.
///
/// One global subscriber serves every test, installed before any service
/// starts: with a subscriber per test (`set_default`), a span or event first
/// hit on another thread at the moment a test installs its own can have its
/// interest cached as "never", and silently go missing from that test.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// Where the calling thread's log lines go, if anywhere.
    static CAPTURING: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Installs the global subscriber once; lines go to the calling thread's
/// [`Logs`], if it is capturing.
pub(super) fn install_subscriber() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in tests that use the runtime's");
    });
}

/// Stops the calling thread's capture when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURING.with(|capturing| capturing.borrow_mut().take());
    }
}

impl Logs {
    /// Captures every event of the calling thread until the guard drops.
    #[must_use]
    pub fn capture() -> (Self, CaptureGuard) {
        install_subscriber();
        let logs = Self::default();
        CAPTURING.with(|capturing| *capturing.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard)
    }

    /// Every captured event with the given message.
    #[must_use]
    pub fn events(&self, message: &str) -> Vec<Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["message"] == message)
            .collect()
    }
}

/// The writer of the global subscriber: appends to the calling thread's
/// capture, or drops the line.
struct ThreadCapture;

impl io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURING.with(|capturing| {
            if let Some(logs) = capturing.borrow().as_ref() {
                logs.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
