//! A `tracing` writer that keeps what it is given, for the tests that read the log
//! (its own file: only the binaries that capture include it, so no other has it unused).

use std::sync::{Arc, Mutex};

/// A `tracing` writer that keeps what it is given.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    /// Installs a subscriber writing into a new capture, for this thread, until the
    /// guard is dropped.
    pub fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::util::SubscriberInitExt;
        let captured = Captured::default();
        let guard = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish()
            .set_default();
        (captured, guard)
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
